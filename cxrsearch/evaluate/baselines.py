"""Baselines run on the same queries and pools as the model: BM25, untrained towers, random.

- **BM25** over the report text (findings + impression, ``Study.report_text()``), with the ``bm25s``
  package (Lucene BM25, ``k1=1.5``, ``b=0.75``, its English stop words, no stemming). The pool's
  reports are the documents and the query study's report is the query.
- **Untrained towers**: the checkpoint's own towers under projections, fusion and heads freshly
  initialised from a fixed seed, i.e. the model *before* its head training. With a checkpoint
  trained with frozen towers (``--freeze-encoders``) this is exactly the untrained model; with
  fine-tuned towers it is "trained towers, untrained fusion", and the report says which. It answers
  "what did training add on top of the pretrained encoders?". It is saved as a checkpoint of its
  own and indexed and searched exactly like the model (same store, same search code).
- **Random**: a uniformly random ranking of the pool (fixed seed); its ``P@k`` estimates the
  prevalence of relevant studies, the floor every method must clear.

Each function returns rankings as lists of pool study ids, best first, never containing the query's
own study, ``depth`` long (or the pool size less one, if smaller).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint

BM25_SETTINGS = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en", "stemmer": None}
UNTRAINED_SEED = 0
RANDOM_SEED = 0


def _drop_self(ranked: Sequence[str], own: str, depth: int) -> list[str]:
    return [uid for uid in ranked if uid != own][:depth]


def bm25_rankings(
    pool_uids: Sequence[str],
    pool_texts: Sequence[str],
    query_uids: Sequence[str],
    query_texts: Sequence[str],
    depth: int,
) -> list[list[str]]:
    """Rank the pool's reports for each query report with BM25 (see the module docstring)."""
    import bm25s

    if len(pool_uids) != len(pool_texts) or len(query_uids) != len(query_texts):
        raise ConfigError("bm25: ids and texts must line up")
    if not pool_uids or not query_uids:
        return [[] for _ in query_uids]
    retriever = bm25s.BM25(method=BM25_SETTINGS["method"], k1=BM25_SETTINGS["k1"], b=BM25_SETTINGS["b"])
    corpus = bm25s.tokenize(list(pool_texts), stopwords=BM25_SETTINGS["stopwords"], show_progress=False)
    retriever.index(corpus, show_progress=False)
    queries = bm25s.tokenize(list(query_texts), stopwords=BM25_SETTINGS["stopwords"], return_ids=False, show_progress=False)
    fetch = min(depth + 1, len(pool_uids))  # one extra: the query's own report may come back first
    documents, _ = retriever.retrieve(queries, k=fetch, show_progress=False)
    return [_drop_self([pool_uids[i] for i in row], own, depth) for row, own in zip(documents, query_uids)]


def random_rankings(pool_uids: Sequence[str], query_uids: Sequence[str], depth: int, seed: int = RANDOM_SEED) -> list[list[str]]:
    """A uniformly random ranking of the pool per query (the query's own study left out)."""
    rng = np.random.default_rng(seed)
    fetch = min(depth + 1, len(pool_uids))
    out = []
    for own in query_uids:
        picks = rng.choice(len(pool_uids), size=fetch, replace=False)
        out.append(_drop_self([pool_uids[i] for i in picks], own, depth))
    return out


def exact_rankings(
    pool_uids: Sequence[str],
    pool_vectors: np.ndarray,
    query_uids: Sequence[str],
    query_vectors: np.ndarray,
    depth: int,
) -> list[list[str]]:
    """Exact cosine top-``depth`` (numpy) of L2-normalised ``query_vectors`` ``[Q, D]`` against
    ``pool_vectors`` ``[N, D]``; ties keep pool order. The query's own study is left out."""
    pool = np.asarray(pool_vectors, dtype=np.float32)
    queries = np.asarray(query_vectors, dtype=np.float32)
    if pool.ndim != 2 or queries.ndim != 2 or pool.shape[1] != queries.shape[1] or len(pool) != len(pool_uids):
        raise ConfigError(f"exact search: pool {pool.shape} / queries {queries.shape} do not line up")
    if len(queries) != len(query_uids):
        raise ConfigError(f"exact search: {len(queries)} query vectors for {len(query_uids)} queries")
    if len(pool) == 0:
        return [[] for _ in query_uids]
    fetch = min(depth + 1, len(pool))
    scores = queries @ pool.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :fetch]
    return [_drop_self([pool_uids[i] for i in row], own, depth) for row, own in zip(order, query_uids)]


def towers_frozen(checkpoint: Checkpoint) -> bool | None:
    """Whether the checkpoint was trained with ``--freeze-encoders`` (``None``: not recorded)."""
    training = checkpoint.info.extra.get("training")
    value = training.get("freeze_encoders") if isinstance(training, dict) else None
    return None if value is None else bool(value)


def untrained_checkpoint(checkpoint: Checkpoint, directory: Path, seed: int = UNTRAINED_SEED) -> Path:
    """Save (once) and return a checkpoint of the untrained baseline of ``checkpoint`` in ``directory``:
    its towers with projections, fusion and heads initialised by ``torch.manual_seed(seed)`` and
    thresholds 0.5 (an untrained model has none). A checkpoint already there for the same weights
    and seed is reused. Saving it lets the baseline go through indexing and search exactly like the
    model (see the module docstring)."""
    import torch

    from cxrsearch.model.checkpoint import read_checkpoint_info, save_checkpoint
    from cxrsearch.model.fusion import FusionModel

    directory = Path(directory)
    marker = {"untrained_from": checkpoint.fingerprint, "seed": seed}
    if (directory / "config.json").is_file() and read_checkpoint_info(directory).extra.get("untrained_baseline") == marker:
        return directory
    trained = checkpoint.model
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = FusionModel(trained.config, trained.labels, trained.image_tower, trained.text_tower)
    finally:
        torch.random.set_rng_state(state)
    save_checkpoint(directory, fresh.eval(), thresholds=[0.5] * len(trained.labels), extra={"untrained_baseline": marker})
    return directory
