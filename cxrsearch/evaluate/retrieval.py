"""Retrieval quality: queries from the evaluated split, judged by MeSH labels, model vs baselines.

Settings (both exclude the query's own study from every ranking):

- ``historical``: the pool is the **train** split (the "historical cases" an educator searches);
- ``within``: the pool is the evaluated split itself (skipped when that split is ``train``).

Modes, each run only for queries that have its inputs (a mode with no such query reports why):

====================  ===================================  ============================================
mode                  the query                            ``cxrsearch search`` equivalent
====================  ===================================  ============================================
``text->case``        the query study's report text        ``--text REPORT`` (text + image vectors, RRF)
``image->case``       its first frontal radiograph         ``--image FILE`` (image vectors)
``image+text->case``  that radiograph with the report      ``--image FILE --text REPORT`` (joint)
``case->case``        the indexed study itself             ``--like STUDY`` (its stored joint vector)
====================  ===================================  ============================================

Methods: ``model`` (the checkpoint) and ``untrained`` (see :mod:`.baselines`) search their case base
in Qdrant exactly as ``cxrsearch search`` does: ``case->case`` through
:func:`cxrsearch.search.search` itself; the other modes encode all queries in batches with
:func:`cxrsearch.search.modes.encode_queries` and send :func:`cxrsearch.search.modes.run_query`,
the store query of ``search`` (one query-mode table, ``tests/evaluate`` checks the hits agree), with
``Filter(split=<pool>, exclude_study_ids=(<query study>,))``. ``bm25`` ranks the pool's reports by
the query's report text (modes with text); ``random`` shuffles the pool. Hits are points; a ranking
keeps each study once (its best point), and never the query's own study.

Queries: studies of the split with at least one label (their primary label is defined) and at least
one strictly relevant study in the pool; every method of a (setting, mode) answers the same queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.baselines import bm25_rankings, cosine_rankings, fit_label_model, random_rankings
from cxrsearch.evaluate.casebase import Case
from cxrsearch.evaluate.metrics import mean_metrics
from cxrsearch.evaluate.relevance import RELEVANCE_MODES, Pool, Query
from cxrsearch.evaluate.short_queries import load_short_queries
from cxrsearch.evaluate.subsets import subset_masks
from cxrsearch.model.train_data import with_finding_sentences
from cxrsearch.progress import ProgressCallback, ProgressEvent
from cxrsearch.search import QuerySpec, search
from cxrsearch.search.modes import FusionWeights, bm25_params, fusion_weights, query_text, run_query
from cxrsearch.search.modes import encode_queries as encode
from cxrsearch.search.modes import mode as search_mode
from cxrsearch.store.base import Filter
from cxrsearch.store.schema import Bm25Spec

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.encode import Encoder
    from cxrsearch.store.base import Store

MODES = ("text->case", "image->case", "image+text->case", "case->case")
METHODS = ("model", "dense", "qdrant-bm25", "labels", "untrained", "tfidf-lr", "tfidf-lr-dot", "bm25", "random")
"""``model``: the checkpoint as ``cxrsearch search`` runs it (hybrid for text queries, val-tuned
weights); ``dense`` / ``qdrant-bm25`` / ``labels``: one component of that hybrid alone (text
modes only); ``tfidf-lr``: TF-IDF + per-label logistic regression, supervised on the labels that
define relevance, ranking by cosine of predicted label probabilities
(:func:`.baselines.tfidf_label_rankings`); ``tfidf-lr-dot``: the same probabilities ranked by dot
product, as the store ranks the model's label vectors; ``bm25`` (bm25s), ``random``."""
COMPONENT_METHODS = {"dense": "text", "qdrant-bm25": "bm25", "labels": "labels"}
"""Methods that run one component of the model's fused text query alone (the others weigh 0)."""
_NEEDS = {name: search_mode(name).inputs for name in MODES}


@dataclass(frozen=True)
class QueryCase:
    """A query study: MeSH ``labels`` and ``primary`` label, report ``text`` (``None`` if empty) and
    the file of its query radiograph (``None`` without one)."""

    uid: str
    labels: tuple[str, ...]
    primary: str
    text: str | None
    image: str | None


@dataclass(frozen=True)
class Searcher:
    """A checkpoint's case base: ``encoder`` searching ``collection`` of ``store``; ``weights``
    overrides the fusion weights ``search`` uses (e.g. one component alone, for a baseline)."""

    store: Store
    collection: str
    encoder: Encoder
    weights: FusionWeights | None = None

    def fusion(self) -> FusionWeights:
        return self.weights if self.weights is not None else fusion_weights(self.encoder)

    def bm25(self, mode: str) -> Bm25Spec | None:
        """The collection's BM25 parameters when ``mode`` needs them."""
        return bm25_params(self.store, self.collection, mode)


@dataclass(frozen=True)
class RetrievalRow:
    """One method in one (setting, mode) under one relevance rule.

    ``metrics``: ``P@k``, ``R@k``, ``mAP@k``, ``nDCG@k`` per k and ``MRR`` (means over ``queries``).
    ``by_primary_label``: the same metrics per query primary label, with ``queries`` counts.
    """

    setting: str
    mode: str
    method: str
    relevance: str
    queries: int
    metrics: Mapping[str, float]
    by_primary_label: Mapping[str, Mapping[str, float]]
    subset: str = "all"
    """``all`` queries, or one of the subsets of :mod:`.subsets` (``novel``, ``non-normal``; strict only)."""


@dataclass(frozen=True)
class ModeStatus:
    """Whether a mode ran in a setting: ``queries`` answered, or ``note`` saying why not."""

    setting: str
    mode: str
    queries: int
    note: str | None


@dataclass(frozen=True)
class RetrievalResult:
    """Every row plus what was searched: ``pools`` (setting -> (split, studies)), ``ks``, and the
    split studies that could not be queries (``unlabelled``: no label; ``no_relevant``: per
    setting, labelled queries whose pool holds no strictly relevant study)."""

    ks: tuple[int, ...]
    pools: Mapping[str, tuple[str, int]]
    modes: tuple[ModeStatus, ...]
    rows: tuple[RetrievalRow, ...]
    unlabelled: int
    no_relevant: Mapping[str, int]
    notes: tuple[str, ...] = ()
    """Methods that could not run, and why (e.g. tfidf-lr on a pool too small to fit it)."""

    def row(self, setting: str, mode: str, method: str, relevance: str, subset: str = "all") -> RetrievalRow | None:
        key = (setting, mode, method, relevance, subset)
        return next((r for r in self.rows if (r.setting, r.mode, r.method, r.relevance, r.subset) == key), None)


def _has(query: QueryCase, need: str) -> bool:
    return (query.text if need == "text" else query.image) is not None


def _no_inputs_note(mode: str) -> str:
    return "no images" if "image" in _NEEDS[mode] else "no queries with text"


def _dedupe(study_ids: Sequence[str], own: str, depth: int) -> list[str]:
    seen: list[str] = []
    for uid in study_ids:
        if uid != own and uid not in seen:
            seen.append(uid)
            if len(seen) == depth:
                break
    return seen


def encode_queries(
    encoder: Encoder, mode: str, queries: Sequence[QueryCase], batch_size: int = 32, bm25: Bm25Spec | None = None
) -> list[dict[str, Any]]:
    """The query vectors of a text/image ``mode`` for each query, in batches, through
    :func:`cxrsearch.search.modes.encode_queries` (what ``search`` does for one query)."""
    from cxrsearch.image.decode import decode_image

    if mode == "case->case":
        raise ConfigError("encode_queries: case->case queries use the stored vectors")
    texts = [q.text or "" for q in queries] if "text" in _NEEDS[mode] else None
    images = [decode_image(Path(q.image or "")) for q in queries] if "image" in _NEEDS[mode] else None
    return encode(encoder, search_mode(mode).name, texts, images, batch_size=batch_size, bm25=bm25)


def search_rankings(
    searcher: Searcher,
    mode: str,
    queries: Sequence[QueryCase],
    split: str,
    depth: int,
    fetch: int,
    vectors: Sequence[Mapping[str, np.ndarray]] | None = None,
    tick: Callable[[], None] | None = None,
) -> list[list[str]]:
    """Rankings (study ids, best first) of the case base for each query, deduplicated by study.

    ``case->case`` runs :func:`cxrsearch.search.search` with ``like=<study>`` (the stored joint
    vector; the example's own study is excluded by the search itself). The other modes run the same
    store queries as ``search`` with ``vectors`` from :func:`encode_queries` (encoded here when not
    given) and ``Filter(split=split, exclude_study_ids=(query,))``. ``fetch`` points are asked for,
    enough for ``depth`` distinct studies when a study has several radiographs.
    """
    if mode != "case->case" and vectors is None:
        vectors = encode_queries(searcher.encoder, mode, queries, bm25=searcher.bm25(mode))
    weights = searcher.fusion()
    out = []
    for i, query in enumerate(queries):
        if mode == "case->case":
            hits = search(QuerySpec(like=query.uid, split=split, k=fetch), searcher.store, searcher.collection)
        else:
            flt = Filter(split=split or None, exclude_study_ids=(query.uid,))
            hits = run_query(
                searcher.store,
                searcher.collection,
                mode,
                cast("Sequence[Mapping[str, np.ndarray]]", vectors)[i],  # encoded above
                flt,
                fetch,
                weights,
            )
        out.append(_dedupe([str(hit.payload.get("study_id")) for hit in hits], query.uid, depth))
        if tick is not None:
            tick()
    return out


def _rows(
    setting: str,
    mode: str,
    method: str,
    pool: Pool,
    queries: Sequence[QueryCase],
    rankings: Sequence[Sequence[str]],
    ks: tuple[int, ...],
    subsets: Mapping[str, np.ndarray] | None = None,
) -> list[RetrievalRow]:
    """Rows under both relevance rules for all queries, and strict rows for each of ``subsets``
    (name -> bool mask over ``queries``)."""
    depth = max(ks)
    rows = []
    for relevance in RELEVANCE_MODES:
        judged = [
            pool.judge(Query(q.uid, q.labels, q.primary), ranking, relevance, depth)
            for q, ranking in zip(queries, rankings)
        ]
        by_label: dict[str, list] = {}
        for query, one in zip(queries, judged):
            by_label.setdefault(query.primary, []).append(one)
        per_label = {
            label: {"queries": len(items), **mean_metrics(items, ks)} for label, items in sorted(by_label.items())
        }
        rows.append(RetrievalRow(setting, mode, method, relevance, len(queries), mean_metrics(judged, ks), per_label))
        if relevance == "strict":
            for name, mask in (subsets or {}).items():
                kept = [one for one, keep in zip(judged, mask) if keep]
                if kept and name != "all":
                    rows.append(
                        RetrievalRow(
                            setting, mode, method, relevance, len(kept), mean_metrics(kept, ks), {}, subset=name
                        )
                    )
    return rows


def _study_order(uids: Iterable[str]) -> list[str]:
    """Study ids (``CXR<n>``) in report-number order."""
    return sorted(uids, key=lambda u: int(u[3:]))


def _depth_and_fetch(ks: tuple[int, ...], cases: Mapping[str, Case]) -> tuple[int, int]:
    """The ranking depth (the largest k) and the points to fetch for it: enough for ``depth``
    distinct studies when a study has several points (radiographs), at most 1000."""
    depth = max(ks)
    per_study = max((len(case.points) for case in cases.values()), default=1)
    return depth, min(1000, depth * per_study)


@dataclass(frozen=True)
class _SearchPool:
    """The studies one setting searches: its ``uids`` (report order) and their report ``texts``,
    ``split`` (the search filter; ``""``: none) and the relevance ``judge`` over them."""

    setting: str
    split: str
    uids: list[str]
    texts: list[str]
    judge: Pool


def _text_baseline_rows(
    pool: _SearchPool,
    mode: str,
    queries: Sequence[QueryCase],
    label_model: Callable[[], Any],
    ks: tuple[int, ...],
    subsets: Mapping[str, np.ndarray] | None = None,
) -> list[RetrievalRow]:
    """``bm25`` rows, then ``tfidf-lr`` and ``tfidf-lr-dot`` rows when ``label_model()`` (asked after
    BM25 ranked) gives a model, for queries that all have a report text."""
    depth = max(ks)
    query_uids, query_texts = [q.uid for q in queries], [q.text or "" for q in queries]
    ranked = bm25_rankings(pool.uids, pool.texts, query_uids, query_texts, depth)
    rows = _rows(pool.setting, mode, "bm25", pool.judge, queries, ranked, ks, subsets)
    model = label_model()
    if model is not None:
        pool_probs, query_probs = model.predict(pool.texts), model.predict(query_texts)
        for method, normalise in (("tfidf-lr", True), ("tfidf-lr-dot", False)):
            ranked = cosine_rankings(pool.uids, pool_probs, query_uids, query_probs, depth, normalise=normalise)
            rows += _rows(pool.setting, mode, method, pool.judge, queries, ranked, ks, subsets)
    return rows


def _random_rows(
    pool: _SearchPool,
    mode: str,
    queries: Sequence[QueryCase],
    ks: tuple[int, ...],
    subsets: Mapping[str, np.ndarray] | None = None,
) -> list[RetrievalRow]:
    """The ``random`` baseline's rows."""
    ranked = random_rankings(pool.uids, [q.uid for q in queries], max(ks))
    return _rows(pool.setting, mode, "random", pool.judge, queries, ranked, ks, subsets)


def evaluate_retrieval(
    split: str,
    queries: Sequence[QueryCase],
    cases: Mapping[str, Case],
    label_sets: Mapping[str, tuple[str, ...]],
    texts: Mapping[str, str],
    vocabulary: Sequence[str],
    searchers: Mapping[str, Searcher],
    ks: Sequence[int],
    unlabelled: int = 0,
    progress: ProgressCallback | None = None,
    finding_sentences: bool = False,
) -> RetrievalResult:
    """Run every (setting, mode, method) on ``queries`` (studies of ``split``; see the module doc).

    ``cases``: the stored studies (any split); ``label_sets`` / ``texts``: MeSH labels and report
    text by study id; ``searchers``: ``{"model": .., "untrained": ..}``; ``finding_sentences``:
    the checkpoint was trained with them, so tfidf-lr is too; ``progress``: gets
    ``ProgressEvent("<setting> <mode>", done, total)`` as queries are searched.
    """
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k values must be positive integers, got {list(ks)}")
    run = _RetrievalRun(queries, cases, label_sets, texts, vocabulary, searchers, ks, progress, finding_sentences)
    settings = [("historical", "train")] + ([("within", split)] if split != "train" else [])
    pools, statuses, rows, no_relevant = {}, [], [], {}
    for setting, pool_split in settings:
        uids = _study_order(uid for uid, case in cases.items() if case.split == pool_split)
        pool = _SearchPool(
            setting,
            pool_split,
            uids,
            [texts[uid] for uid in uids],
            Pool(uids, [label_sets[u] for u in uids], vocabulary),
        )
        pools[setting] = (pool_split, len(uids))
        answerable = [q for q in queries if pool.judge.gains(Query(q.uid, q.labels, q.primary), "strict").any()]
        no_relevant[setting] = len(queries) - len(answerable)
        for mode in MODES:
            status, mode_rows = run.mode(pool, mode, answerable)
            statuses.append(status)
            rows += mode_rows
    return RetrievalResult(ks, pools, tuple(statuses), tuple(rows), unlabelled, no_relevant, tuple(run.notes))


def _answers(query: QueryCase, mode: str) -> bool:
    """Whether the query has every input ``mode`` needs."""
    return all(_has(query, need) for need in _NEEDS[mode])


_UNFITTED = object()


class _RetrievalRun:
    """One :func:`evaluate_retrieval` call: its inputs, and what it computes once for all settings
    (query vectors per encoder and mode, the tfidf-lr model, the ``notes`` of what could not run)."""

    def __init__(
        self,
        queries: Sequence[QueryCase],
        cases: Mapping[str, Case],
        label_sets: Mapping[str, tuple[str, ...]],
        texts: Mapping[str, str],
        vocabulary: Sequence[str],
        searchers: Mapping[str, Searcher],
        ks: tuple[int, ...],
        progress: ProgressCallback | None,
        finding_sentences: bool,
    ) -> None:
        self.queries, self.cases, self.label_sets, self.texts = queries, cases, label_sets, texts
        self.vocabulary, self.searchers, self.ks = vocabulary, searchers, ks
        self.progress, self.finding_sentences = progress, finding_sentences
        self.depth, self.fetch = _depth_and_fetch(ks, cases)
        self.notes: list[str] = []
        self._vectors: dict[
            tuple[int, str], dict[str, Mapping[str, np.ndarray]]
        ] = {}  # (encoder, mode) -> uid -> vectors
        self._label_model: Any = _UNFITTED

    def mode(
        self, pool: _SearchPool, mode: str, answerable: Sequence[QueryCase]
    ) -> tuple[ModeStatus, list[RetrievalRow]]:
        """Every method of one (setting, mode) on the answerable queries that have the mode's inputs."""
        asked = [q for q in answerable if _answers(q, mode)]
        if not asked:
            with_inputs = any(_answers(q, mode) for q in self.queries)
            note = _no_inputs_note(mode) if not with_inputs else "no query has a relevant study in this pool"
            return ModeStatus(pool.setting, mode, 0, note), []
        subsets = subset_masks([q.uid for q in asked], [q.text for q in asked], [q.labels for q in asked], pool.texts)
        rows = self._searched_rows(pool, mode, asked, subsets)
        if ("text" in _NEEDS[mode] or mode == "case->case") and all(q.text is not None for q in asked):
            rows += _text_baseline_rows(pool, mode, asked, self.label_model, self.ks, subsets)
        rows += _random_rows(pool, mode, asked, self.ks, subsets)
        return ModeStatus(pool.setting, mode, len(asked), None), rows

    def _searched_rows(
        self, pool: _SearchPool, mode: str, asked: Sequence[QueryCase], subsets: Mapping[str, np.ndarray]
    ) -> list[RetrievalRow]:
        """The rows of the methods that search a case base (the component-alone variants: fused modes only)."""
        fused = len(search_mode(mode).components) > 1
        running = {m: s for m, s in self.searchers.items() if fused or s.weights is None}
        tick = self._ticker(f"{pool.setting} {mode}", len(asked) * len(running))
        rows = []
        for method, searcher in running.items():
            vectors = None if mode == "case->case" else self._query_vectors(searcher, mode, asked)
            ranked = search_rankings(searcher, mode, asked, pool.split, self.depth, self.fetch, vectors, tick)
            rows += _rows(pool.setting, mode, method, pool.judge, asked, ranked, self.ks, subsets)
        return rows

    def _ticker(self, stage: str, total: int) -> Callable[[], None]:
        """A callback counting one searched query of ``stage`` (reported to ``progress``)."""
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if self.progress is not None:
                self.progress(ProgressEvent(stage, done, total))

        return tick

    def _query_vectors(
        self, searcher: Searcher, mode: str, asked: Sequence[QueryCase]
    ) -> list[Mapping[str, np.ndarray]]:
        """The query vectors of ``asked``, encoded once per (encoder, mode) for every query with the mode's inputs."""
        key = (id(searcher.encoder), mode)
        if key not in self._vectors:
            encodable = [q for q in self.queries if _answers(q, mode)]
            encoded = encode_queries(searcher.encoder, mode, encodable, bm25=searcher.bm25(mode))
            self._vectors[key] = dict(zip((q.uid for q in encodable), encoded))
        return [self._vectors[key][q.uid] for q in asked]

    def label_model(self) -> Any:
        """The tfidf-lr model, fitted on the train split once (as the checkpoint was), or ``None``."""
        if self._label_model is _UNFITTED:
            self._label_model = _train_label_model(
                self.cases, self.label_sets, self.texts, self.vocabulary, self.notes, self.finding_sentences
            )
        return self._label_model


def _train_label_model(
    cases: Mapping[str, Case],
    label_sets: Mapping[str, tuple[str, ...]],
    texts: Mapping[str, str],
    vocabulary: Sequence[str],
    notes: list[str],
    sentences: bool,
) -> Any:
    """The tfidf-lr model fitted on the train split (plus its finding sentences when the checkpoint
    was trained with them: the baseline reads what the model read), or ``None`` (with a note) when
    it cannot be fitted."""
    train = _study_order(u for u, case in cases.items() if case.split == "train")
    train_texts: list[str | None] = [texts[u] for u in train]
    train_labels = [label_sets[u] for u in train]
    if sentences:
        train_texts, train_labels = with_finding_sentences(train_texts, train_labels)
    try:
        return fit_label_model(train_texts, train_labels, vocabulary)
    except ConfigError as exc:
        notes.append(f"tfidf-lr not run: {exc.message}")
        return None


def evaluate_short_queries(
    split: str,
    cases: Mapping[str, Case],
    label_sets: Mapping[str, tuple[str, ...]],
    texts: Mapping[str, str],
    vocabulary: Sequence[str],
    searchers: Mapping[str, Searcher],
    ks: Sequence[int],
    finding_sentences: bool = False,
) -> tuple[str, tuple[RetrievalRow, ...]]:
    """The short-query protocol: the phrasings of :mod:`.short_queries` an educator types, searched
    without filters against every indexed study, a hit relevant when its MeSH labels hold the
    query's label. The **dev** half is used when ``split`` is ``val`` (the tuning split), the
    **test** half otherwise. Returns the half and one row per method (``setting`` ``"short"``)."""
    half = "dev" if split == "val" else "test"
    ks = tuple(sorted(set(int(k) for k in ks)))
    depth, fetch = _depth_and_fetch(ks, cases)
    uids = _study_order(cases)
    judge = Pool(uids, [label_sets[uid] for uid in uids], vocabulary)
    queries = _short_query_cases(half, vocabulary, judge)
    if not queries:
        return half, ()
    pool = _SearchPool("short", "", uids, [texts[uid] for uid in uids], judge)
    rows: list[RetrievalRow] = []
    for method, searcher in searchers.items():
        ranked = search_rankings(searcher, "text->case", queries, pool.split, depth, fetch)
        rows += _rows(pool.setting, "text->case", method, judge, queries, ranked, ks)
    label_model = partial(_train_label_model, cases, label_sets, texts, vocabulary, [], finding_sentences)
    rows += _text_baseline_rows(pool, "text->case", queries, label_model, ks)
    rows += _random_rows(pool, "text->case", queries, ks)
    return half, tuple(rows)


def _short_query_cases(half: str, vocabulary: Sequence[str], judge: Pool) -> list[QueryCase]:
    """The short queries of ``half`` as query cases, those whose label no pool study carries left out
    (a small or synthetic data set has nothing to find for them, as :func:`evaluate_retrieval` leaves
    out queries without a relevant study)."""
    queries = [
        QueryCase(f"short:{q.id}", (q.label,), q.label, query_text(q.text), None)
        for q in load_short_queries(half, vocabulary)
    ]
    return [q for q in queries if judge.gains(Query(q.uid, q.labels, q.primary), "strict").any()]
