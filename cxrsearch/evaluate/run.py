"""``evaluate(options) -> EvaluationResult``: one reproducible run of every number ``cxrsearch evaluate`` reports.

1. Read the reports and pair radiographs (when an images folder is given) into one index plan.
2. Load the checkpoint; build (once) the untrained baseline checkpoint of the same towers.
3. Index every study of that plan into an evaluation collection per checkpoint (:mod:`.casebase`;
   reused later): the source is read once, not once per collection.
4. Classification on the split from the stored predictions (:mod:`.classification`).
5. Retrieval, settings x modes x methods x relevance (:mod:`.retrieval`).
6. The CXR-CLIP image <-> report protocol where frontal images exist (:mod:`.crossmodal`).

Nothing is tuned on the evaluated split: thresholds come from the checkpoint, the primary label from
the train split's label counts, the baselines have fixed settings and seeds.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch.data.labels import label_names
from cxrsearch.data.openi import Study, load_studies, locate_reports
from cxrsearch.data.pairing import ImageIdMap, index_images, load_view_table
from cxrsearch.data.splits import SPLITS
from cxrsearch.errors import ConfigError, ModelError
from cxrsearch.evaluate.baselines import BM25_SETTINGS, RANDOM_SEED, UNTRAINED_SEED, towers_frozen, untrained_checkpoint
from cxrsearch.evaluate.casebase import collection_name, data_fingerprint, load_cases, store_root
from cxrsearch.evaluate.classification import MIN_POSITIVES, ClassificationResult, evaluate_classification
from cxrsearch.evaluate.crossmodal import CrossModalResult, evaluate_crossmodal
from cxrsearch.evaluate.relevance import label_counts, primary_label
from cxrsearch.evaluate.retrieval import (
    COMPONENT_METHODS,
    QueryCase,
    RetrievalResult,
    RetrievalRow,
    Searcher,
    evaluate_retrieval,
    evaluate_short_queries,
)
from cxrsearch.evaluate.short_queries import SHORT_QUERY_SET
from cxrsearch.index import IndexOptions, Plan, index_studies, plan_items
from cxrsearch.index.record import check_images_trained
from cxrsearch.model.checkpoint import Checkpoint, load_checkpoint
from cxrsearch.model.encode import Encoder
from cxrsearch.progress import ProgressCallback
from cxrsearch.search.modes import FusionWeights, fusion_weights
from cxrsearch.store import open_store

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.evaluate.casebase import Case
    from cxrsearch.index.report import IndexReport
    from cxrsearch.store.base import Store

DEFAULT_KS = (1, 5, 10)
INDEX_BATCH_SIZE = 64


@dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate: ``data`` (reports tgz/folder), ``model`` (checkpoint directory), optional
    ``images`` folder and Open-i ``metadata`` table (views of PNGs), the ``split`` whose studies are
    the queries, the cut-offs ``ks``, and ``cache_dir`` (default ``CXRSEARCH_CACHE``/user cache)."""

    data: Path
    model: Path
    images: Path | None = None
    metadata: Path | None = None
    split: str = "test"
    ks: tuple[int, ...] = DEFAULT_KS
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        ks = tuple(sorted(set(self.ks)))
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k > 500 for k in ks):
            raise ConfigError(f"--k needs integers from 1 to 500, got {list(self.ks)}")
        object.__setattr__(self, "ks", ks)
        if self.images is not None and not Path(self.images).is_dir():
            raise ConfigError("--images: not a directory", path=self.images)
        if self.metadata is not None and not Path(self.metadata).is_file():
            raise ConfigError("metadata table not found", path=self.metadata)


@dataclass(frozen=True)
class ShortQueryResult:
    """The short-query protocol's rows (one per method), on the ``half`` (dev or test) of query set ``version``."""

    version: str
    half: str
    rows: tuple[RetrievalRow, ...]

    def row(self, method: str, relevance: str = "strict") -> RetrievalRow | None:
        return next((r for r in self.rows if (r.method, r.relevance) == (method, relevance)), None)


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one run measured. ``settings``/``data``/``checkpoint``/``index``/``timings``/``machine``
    are plain JSON mappings (what was run, on what, how long); the rest are typed results."""

    settings: Mapping[str, Any]
    data: Mapping[str, Any]
    checkpoint: Mapping[str, Any]
    index: Mapping[str, Any]
    classification: ClassificationResult
    retrieval: RetrievalResult
    short_queries: ShortQueryResult
    crossmodal: tuple[CrossModalResult, ...]
    timings: Mapping[str, float]
    machine: Mapping[str, Any] = field(default_factory=dict)


def machine_facts() -> dict[str, Any]:
    """The machine a run used (CPU count, platform, torch threads, accelerator)."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "cuda_available": bool(torch.cuda.is_available()),
    }


@dataclass(frozen=True)
class _Inputs:
    """What a run reads before it indexes: the reports (``source``, ``studies``), the radiographs
    found (``images``), the index ``plan`` of both (keyed for the model's collection), the label
    ``vocabulary`` with the train split's label counts, the checkpoint and the untrained baseline
    saved beside the case bases (``cache``), and one encoder per method."""

    source: Path
    studies: list[Study]
    images: ImageIdMap | None
    plan: Plan
    data_fp: str
    vocabulary: tuple[str, ...]
    train_counts: dict[str, int]
    checkpoint: Checkpoint
    cache: Path
    untrained_path: Path
    encoders: dict[str, Encoder]


@dataclass(frozen=True)
class _Measured:
    """What a run measured with the store open: the ``index`` facts per method, the ``split_uids``
    indexed (the candidate queries) and the typed results."""

    index: dict[str, dict[str, Any]]
    split_uids: list[str]
    classification: ClassificationResult
    retrieval: RetrievalResult
    short_queries: ShortQueryResult
    crossmodal: tuple[CrossModalResult, ...]


def evaluate(options: EvaluationOptions, progress: ProgressCallback | None = None) -> EvaluationResult:
    """Run the whole evaluation (see the module docstring). ``progress`` gets
    ``ProgressEvent(stage, done, total)`` as work advances: ``"index <method>"`` (points) while a case
    base is indexed, ``"<setting> <mode>"`` (searched queries) during retrieval; the CLI draws them,
    the library never prints."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    inputs = _load_inputs(options)
    timings["load"] = time.perf_counter() - started

    store = open_store(store_dir=store_root(options.cache_dir))
    try:
        measured = _measure(store, inputs, options, progress, timings)
    finally:
        store.close()
    timings["total"] = time.perf_counter() - started

    return EvaluationResult(
        settings=_settings_facts(options, fusion_weights(inputs.encoders["model"]).source),
        data=_data_facts(inputs, len(measured.split_uids)),
        checkpoint=_checkpoint_facts(inputs.checkpoint, inputs.untrained_path),
        index=measured.index,
        classification=measured.classification,
        retrieval=measured.retrieval,
        short_queries=measured.short_queries,
        crossmodal=measured.crossmodal,
        timings={key: round(value, 2) for key, value in timings.items()},
        machine=machine_facts(),
    )


def _load_inputs(options: EvaluationOptions) -> _Inputs:
    """Steps 1-2: read the reports and radiographs into the index plan, load and check the checkpoint,
    build its untrained twin."""
    source = locate_reports(options.data)
    studies = load_studies(source)
    images = index_images(options.images) if options.images is not None else None
    data_fp = data_fingerprint(studies, images)
    vocabulary = label_names()
    checkpoint = load_checkpoint(options.model)
    _check_checkpoint(checkpoint, vocabulary, options)
    cache = store_root(options.cache_dir).parent
    untrained_path = untrained_checkpoint(
        checkpoint, cache / f"untrained-{checkpoint.fingerprint[:12]}-seed{UNTRAINED_SEED}"
    )
    encoders = {"model": Encoder(checkpoint), "untrained": Encoder(untrained_path)}
    views = load_view_table(options.metadata) if options.metadata is not None else None
    plan = plan_items(studies, collection_name(str(encoders["model"].fingerprint), data_fp), images, views)
    return _Inputs(
        source=source,
        studies=studies,
        images=images,
        plan=plan,
        data_fp=data_fp,
        vocabulary=vocabulary,
        train_counts=label_counts(s.labels for s in studies if s.split == "train"),
        checkpoint=checkpoint,
        cache=cache,
        untrained_path=untrained_path,
        encoders=encoders,
    )


def _check_checkpoint(checkpoint: Checkpoint, vocabulary: Sequence[str], options: EvaluationOptions) -> None:
    """ModelError when the checkpoint cannot be evaluated here: no image training while radiographs
    are given, or labels other than the vocabulary's."""
    if options.images is not None:
        check_images_trained(checkpoint.info, "evaluating with radiographs")
    if set(checkpoint.labels) != set(vocabulary):
        raise ModelError(
            f"the checkpoint's labels differ from the label vocabulary ({len(checkpoint.labels)} vs "
            f"{len(vocabulary)}): it was trained with another vocabulary",
            path=options.model,
        )


def _measure(
    store: Store,
    inputs: _Inputs,
    options: EvaluationOptions,
    progress: ProgressCallback | None,
    timings: dict[str, float],
) -> _Measured:
    """Steps 3-6: index (or reuse) the case bases, then classification, retrieval, short queries and
    the cross-modal protocol (``timings`` gets one entry per step)."""
    searchers, index_facts, cases_by_method = _case_bases(store, inputs, options, progress, timings)
    searchers = _with_component_methods(searchers)
    cases = cases_by_method["model"]
    split_uids = _split_uids(inputs, cases, options.split)
    by_uid = {study.uid: study for study in inputs.studies}
    split_studies = [by_uid[uid] for uid in split_uids]

    tick = time.perf_counter()
    classification = _classification(inputs.checkpoint, split_studies, cases)
    timings["classification"] = time.perf_counter() - tick

    tick = time.perf_counter()
    sentences = _trained_on_finding_sentences(inputs.checkpoint)
    label_sets = {s.uid: s.labels for s in inputs.studies}
    texts = {s.uid: s.report_text() for s in inputs.studies}
    queries = _queries(split_studies, cases, inputs.train_counts, inputs.vocabulary)
    retrieval = evaluate_retrieval(
        options.split,
        queries,
        cases,
        label_sets,
        texts,
        inputs.vocabulary,
        searchers,
        options.ks,
        unlabelled=len(split_uids) - len(queries),
        progress=progress,
        finding_sentences=sentences,
    )
    timings["retrieval"] = time.perf_counter() - tick

    tick = time.perf_counter()
    short_half, short_rows = evaluate_short_queries(
        options.split, cases, label_sets, texts, inputs.vocabulary, searchers, options.ks, finding_sentences=sentences
    )
    timings["short_queries"] = time.perf_counter() - tick

    crossmodal = tuple(
        evaluate_crossmodal(method, cases_by_method[method], options.split) for method in inputs.encoders
    )
    return _Measured(
        index_facts,
        split_uids,
        classification,
        retrieval,
        ShortQueryResult(SHORT_QUERY_SET, short_half, short_rows),
        crossmodal,
    )


def _classification(
    checkpoint: Checkpoint, studies: Sequence[Study], cases: Mapping[str, Case]
) -> ClassificationResult:
    """Step 4: the stored predictions of the split's studies against their labels, at the checkpoint's thresholds."""
    return evaluate_classification(
        [study.labels for study in studies],
        np.array([cases[study.uid].probs() for study in studies]),
        checkpoint.labels,
        checkpoint.thresholds,
    )


def _split_uids(inputs: _Inputs, cases: Mapping[str, Case], split: str) -> list[str]:
    """The evaluated split's studies that were indexed (in report order); ConfigError when there is none."""
    split_uids = [s.uid for s in inputs.studies if s.split == split and s.uid in cases]
    if not split_uids:
        raise ConfigError(
            f"the {split} split has no study with a report text or radiograph to evaluate", path=inputs.source
        )
    return split_uids


def _trained_on_finding_sentences(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint was trained with finding sentences (the tfidf-lr baseline then is too)."""
    training = checkpoint.info.extra.get("training")
    return bool(training.get("finding_sentences")) if isinstance(training, dict) else False


def _settings_facts(options: EvaluationOptions, fusion: str) -> dict[str, Any]:
    """``settings`` of the result: what was run, with which fixed baseline settings (``fusion``: where
    the model's fusion weights come from)."""
    return {
        "data": str(options.data),
        "images": None if options.images is None else str(options.images),
        "metadata": None if options.metadata is None else str(options.metadata),
        "model": str(options.model),
        "split": options.split,
        "ks": list(options.ks),
        "relevance": ["strict", "lenient"],
        "primary_label": "rarest of the query's labels in the train split (ties: vocabulary order)",
        "min_positives": MIN_POSITIVES,
        "bm25": BM25_SETTINGS,
        "random_seed": RANDOM_SEED,
        "untrained_seed": UNTRAINED_SEED,
        "fusion": fusion,
        "notes": _notes(options.split),
    }


def _data_facts(inputs: _Inputs, split_studies_indexed: int) -> dict[str, Any]:
    """``data`` of the result: the reports read, split sizes, radiographs found, train label counts."""
    studies, images = inputs.studies, inputs.images
    return {
        "source": str(inputs.source),
        "fingerprint": inputs.data_fp,
        "studies": len(studies),
        "split_sizes": {name: sum(1 for s in studies if s.split == name) for name in ("train", "val", "test")},
        "split_studies_indexed": split_studies_indexed,
        "images_found": 0 if images is None else sum(1 for s in studies for i in s.image_ids if i in images),
        "train_label_counts": {label: inputs.train_counts.get(label, 0) for label in inputs.vocabulary},
    }


def _checkpoint_facts(checkpoint: Checkpoint, untrained_path: Path) -> dict[str, Any]:
    """``checkpoint`` of the result: the evaluated checkpoint and where its untrained baseline is."""
    return {
        "path": str(checkpoint.path),
        "model": checkpoint.config.name,
        "fingerprint": checkpoint.fingerprint,
        "data_fingerprint": checkpoint.info.data_fingerprint,
        "towers_frozen": towers_frozen(checkpoint),
        "created": checkpoint.info.created,
        "untrained_baseline": str(untrained_path),
    }


def _notes(split: str) -> list[str]:
    """What a reader must know about these numbers."""
    notes = [
        "the model is trained on the MeSH-derived labels that define relevance: the supervised tfidf-lr "
        "baseline is the anchor, not BM25 or the untrained towers"
    ]
    if split == "val":
        notes.append(
            "val is the tuning split: the checkpoint's thresholds, its early stopping and the fusion weights "
            "were chosen on it, so these numbers are optimistic; report --split test"
        )
    return notes


def _with_component_methods(searchers: dict[str, Searcher]) -> dict[str, Searcher]:
    """The searchers plus one per component of the model's fused text query, that component alone."""
    out = dict(searchers)
    for method, component in COMPONENT_METHODS.items():
        alone = {name: float(name == component) for name in ("text", "bm25", "labels", "image")}
        out[method] = replace(searchers["model"], weights=FusionWeights(alone, f"{component} alone"))
    return out


def _case_bases(
    store: Store,
    inputs: _Inputs,
    options: EvaluationOptions,
    progress: ProgressCallback | None,
    timings: dict[str, float],
) -> tuple[dict[str, Searcher], dict[str, dict[str, Any]], dict[str, dict[str, Case]]]:
    """Index (or reuse) one evaluation collection per encoder, all from ``inputs.plan``; returns
    searchers, index facts and cases."""
    searchers, facts, cases = {}, {}, {}
    for method, encoder in inputs.encoders.items():
        tick = time.perf_counter()
        collection = collection_name(str(encoder.fingerprint), inputs.data_fp)
        on_progress = None if progress is None else _restaged(progress, f"index {method}")
        report = _index_case_base(store, collection, encoder, inputs, options, on_progress)
        facts[method] = _index_facts(collection, store, report, time.perf_counter() - tick)
        searchers[method] = Searcher(store, collection, encoder)
        cases[method] = load_cases(store, collection, encoder.labels, options.images)
        timings[f"index_{method}"] = time.perf_counter() - tick
    return searchers, facts, cases


def _restaged(progress: ProgressCallback, stage: str) -> ProgressCallback:
    """``progress`` with each event's stage replaced by ``stage`` (the index's ``"index"`` events
    become ``"index <method>"``)."""
    return lambda event: progress(replace(event, stage=stage))


def _index_case_base(
    store: Store,
    collection: str,
    encoder: Encoder,
    inputs: _Inputs,
    options: EvaluationOptions,
    progress: ProgressCallback | None,
) -> IndexReport:
    """Index the plan's studies into ``collection`` (resuming; nothing is re-encoded when the
    collection is complete). Per-file failures are in the returned report, as with ``cxrsearch index``."""
    index_options = IndexOptions(
        source=inputs.source,
        images_dir=options.images,
        metadata=options.metadata,
        collection=collection,
        failures_dir=inputs.cache / "failures",
        batch_size=INDEX_BATCH_SIZE,
    )
    return index_studies(index_options, store, encoder, progress=progress, plan=inputs.plan)


def _index_facts(collection: str, store: Store, report: IndexReport, seconds: float) -> dict[str, Any]:
    """``index[method]`` of the result: the collection one method searched and how it was built."""
    return {
        "collection": collection,
        "store": store.location,
        "points": report.count,
        "encoded_now": report.indexed,
        "reused": report.skipped_existing,
        "failed": report.failed,
        "empty_reports": report.empty,
        "failures_file": report.failures_path,
        "seconds": round(seconds, 2),
    }


def _queries(
    studies: Sequence[Study], cases: Mapping[str, Case], train_counts: Mapping[str, int], vocabulary: Sequence[str]
) -> list[QueryCase]:
    """The split's studies that have a primary label, with their text and query radiograph."""
    queries = []
    for study in studies:
        primary = primary_label(study.labels, train_counts, vocabulary)
        if primary is not None:
            image = cases[study.uid].query_image()
            queries.append(
                QueryCase(
                    study.uid,
                    study.labels,
                    primary,
                    study.report_text() or None,
                    image.image_path if image is not None else None,
                )
            )
    return queries
