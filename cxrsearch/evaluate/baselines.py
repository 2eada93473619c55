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
- **TF-IDF + logistic regression** (:func:`tfidf_label_rankings`): the strongest *simple supervised*
  baseline. One logistic regression per vocabulary label on TF-IDF word 1-2-grams of the pool's
  reports predicts a label-probability vector per report; the pool is ranked by the cosine of the
  query's vector to each pool report's. It is supervised on the **same MeSH labels that define
  relevance**, so it is the anchor a supervised model has to beat (BM25 and the untrained towers
  never see a label).

Each function returns rankings as lists of pool study ids, best first, never containing the query's
own study, ``depth`` long (or the pool size less one, if smaller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.fusion import FusionModel

BM25_SETTINGS = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en", "stemmer": None}
UNTRAINED_SEED = 0
RANDOM_SEED = 0
# min_df=2: an n-gram seen in a single pool report cannot generalise to a query, it only lets the
# regressions memorise that one report, making the (in-sample) pool vectors over-confident next to the
# (out-of-sample) query vectors; dropping them also cuts the features from ~18.5k to ~7.4k (about 3x faster).
TFIDF_SETTINGS: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
# liblinear: the solver made for sparse, high-dimensional text; single-threaded and deterministic here.
LOGREG_SETTINGS: dict[str, Any] = {
    "C": 4.0,
    "solver": "liblinear",
    "class_weight": None,
    "random_state": 0,
    "max_iter": 1000,
}


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
    queries = bm25s.tokenize(
        list(query_texts), stopwords=BM25_SETTINGS["stopwords"], return_ids=False, show_progress=False
    )
    fetch = min(depth + 1, len(pool_uids))  # one extra: the query's own report may come back first
    documents, _ = retriever.retrieve(queries, k=fetch, show_progress=False)
    return [_drop_self([pool_uids[i] for i in row], own, depth) for row, own in zip(documents, query_uids)]


def random_rankings(
    pool_uids: Sequence[str], query_uids: Sequence[str], depth: int, seed: int = RANDOM_SEED
) -> list[list[str]]:
    """A uniformly random ranking of the pool per query (the query's own study left out)."""
    rng = np.random.default_rng(seed)
    fetch = min(depth + 1, len(pool_uids))
    out = []
    for own in query_uids:
        picks = rng.choice(len(pool_uids), size=fetch, replace=False)
        out.append(_drop_self([pool_uids[i] for i in picks], own, depth))
    return out


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
    if (directory / "config.json").is_file() and read_checkpoint_info(directory).extra.get(
        "untrained_baseline"
    ) == marker:
        return directory
    trained = cast("FusionModel", checkpoint.model)  # the torch model (a full load)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = FusionModel(trained.config, trained.labels, trained.image_tower, trained.text_tower)
    finally:
        torch.random.set_rng_state(state)
    save_checkpoint(
        directory, fresh.eval(), thresholds=[0.5] * len(trained.labels), extra={"untrained_baseline": marker}
    )
    return directory


@dataclass(frozen=True)
class LabelProbabilityModel:
    """Per-label probabilities of a report from TF-IDF features (see :func:`fit_label_model`).

    ``vocabulary``: the label order of the columns; ``vectorizer``: the fitted ``TfidfVectorizer``;
    ``classifiers``: one fitted ``LogisticRegression`` per label, ``None`` for a label the training
    texts had no positive or no negative for, whose probability is the constant ``prevalence[j]``.
    """

    vocabulary: tuple[str, ...]
    vectorizer: Any
    classifiers: tuple[Any, ...]
    prevalence: np.ndarray

    def predict(self, texts: Sequence[str | None]) -> np.ndarray:
        """``[N, L]`` float64 label probabilities of ``texts`` (``None`` reads as the empty report)."""
        features = self.vectorizer.transform([text or "" for text in texts])
        out = np.tile(self.prevalence.astype(np.float64), (features.shape[0], 1))
        for j, classifier in enumerate(self.classifiers):
            if classifier is not None:
                out[:, j] = classifier.predict_proba(features)[:, 1]
        return out


def fit_label_model(
    texts: Sequence[str | None], label_sets: Sequence[Sequence[str]], vocabulary: Sequence[str]
) -> LabelProbabilityModel:
    """Fit :data:`TFIDF_SETTINGS` TF-IDF on ``texts`` and one :data:`LOGREG_SETTINGS` logistic
    regression per ``vocabulary`` label on (``texts``, ``label_sets``). A label with no positive or
    no negative among the texts gets no regression, only its prevalence (0.0 or 1.0) as a constant."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len(texts) != len(label_sets):
        raise ConfigError(f"tfidf: {len(texts)} texts but {len(label_sets)} label sets")
    if not texts:
        raise ConfigError("tfidf: no reports to fit on")
    vocabulary = tuple(vocabulary)
    column = {name: j for j, name in enumerate(vocabulary)}
    targets = np.zeros((len(texts), len(vocabulary)), dtype=np.int64)
    for i, labels in enumerate(label_sets):
        unknown = [label for label in labels if label not in column]
        if unknown:
            raise ConfigError(f"tfidf: labels {unknown} are not in the vocabulary")
        targets[i, [column[label] for label in labels]] = 1
    vectorizer = TfidfVectorizer(**TFIDF_SETTINGS)
    try:
        features = vectorizer.fit_transform([text or "" for text in texts])
    except ValueError as exc:  # "empty vocabulary": no n-gram in at least min_df reports
        raise ConfigError(f"tfidf: the reports share no word or word pair ({exc})") from exc
    prevalence = targets.mean(axis=0)
    classifiers = []
    for j in range(len(vocabulary)):
        y = targets[:, j]
        if 0 < y.sum() < len(y):
            classifiers.append(LogisticRegression(**LOGREG_SETTINGS).fit(features, y))
        else:
            classifiers.append(None)
    return LabelProbabilityModel(vocabulary, vectorizer, tuple(classifiers), prevalence)


def cosine_rankings(
    pool_uids: Sequence[str],
    pool_vectors: np.ndarray,
    query_uids: Sequence[str],
    query_vectors: np.ndarray,
    depth: int,
    normalise: bool = True,
) -> list[list[str]]:
    """Top-``depth`` pool study ids per query by cosine of (un-normalised) ``query_vectors`` ``[Q, D]``
    to ``pool_vectors`` ``[N, D]``, best first (``normalise=False``: by their dot product, as the
    store ranks label-probability vectors). The query's own study is never returned; equal
    scores keep pool order. Scores are rounded to 12 decimals so that equal vectors tie exactly,
    whatever the BLAS summation order; a zero vector scores 0 against everything."""
    pool = np.asarray(pool_vectors, dtype=np.float64)
    queries = np.asarray(query_vectors, dtype=np.float64)
    if pool.ndim != 2 or queries.ndim != 2 or pool.shape[1] != queries.shape[1] or len(pool) != len(pool_uids):
        raise ConfigError(f"cosine search: pool {pool.shape} / queries {queries.shape} do not line up")
    if len(queries) != len(query_uids):
        raise ConfigError(f"cosine search: {len(queries)} query vectors for {len(query_uids)} queries")
    if depth < 1:
        raise ConfigError(f"cosine search: depth must be positive, got {depth}")
    if len(set(pool_uids)) != len(pool_uids):
        raise ConfigError("cosine search: the pool lists a study twice")
    if len(pool) == 0:
        return [[] for _ in query_uids]

    def unit(m: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)

    scores = np.round(unit(queries) @ unit(pool).T if normalise else queries @ pool.T, 12)
    row_of = {uid: i for i, uid in enumerate(pool_uids)}
    for q, uid in enumerate(query_uids):
        own = row_of.get(uid)
        if own is not None:
            scores[q, own] = -np.inf
    n = len(pool)
    out: list[list[str]] = []
    for q, uid in enumerate(query_uids):
        row = scores[q]
        fetch = min(depth, n - (uid in row_of))
        if fetch <= 0:
            out.append([])
            continue
        kth = row[np.argpartition(-row, fetch - 1)[fetch - 1]]  # the fetch-th best score
        candidates = np.flatnonzero(row >= kth)  # ascending pool order, ties with kth included
        candidates = candidates[np.isfinite(row[candidates])]
        order = candidates[np.argsort(-row[candidates], kind="stable")][:fetch]
        out.append([pool_uids[i] for i in order])
    return out


def tfidf_label_rankings(
    pool_uids: Sequence[str],
    pool_texts: Sequence[str | None],
    pool_label_sets: Sequence[Sequence[str]],
    query_uids: Sequence[str],
    query_texts: Sequence[str | None],
    vocabulary: Sequence[str],
    depth: int,
) -> list[list[str]]:
    """Rank the pool for each query report by TF-IDF + logistic-regression label probabilities.

    :func:`fit_label_model` is fitted on the pool's reports and label sets; the pool and the query
    reports are turned into label-probability vectors; the pool is ranked by cosine of the query's
    vector to each pool vector (:func:`cosine_rankings`: the query's own study is never returned,
    ties keep pool order, ``depth`` ids per query or the pool size less one).

    This baseline is **supervised on the same MeSH labels that define relevance** (see
    :mod:`.relevance`): it is the anchor for a supervised model, not a label-free baseline like BM25.
    The pool vectors are in-sample predictions (the pool trained the regressions), the query vectors
    out-of-sample ones, exactly as a deployed model indexed on its training cases would be.
    """
    if len(pool_uids) != len(pool_texts) or len(query_uids) != len(query_texts):
        raise ConfigError("tfidf: ids and texts must line up")
    if not pool_uids or not query_uids:
        return [[] for _ in query_uids]
    model = fit_label_model(pool_texts, pool_label_sets, vocabulary)
    return cosine_rankings(pool_uids, model.predict(pool_texts), query_uids, model.predict(query_texts), depth)
