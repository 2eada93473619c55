"""``index_studies``: reports + radiographs -> embeddings -> points in a collection, resumably.

The run, in order:

1. read every report file (a bad one is a failure, the rest go on) and pair images (:mod:`.plan`),
   unless the caller passes the plan it built (``plan=``: one source indexed into several collections
   is read once);
2. create the collection from its schema with the checkpoint's joint dimension when missing, else
   check its vector size (:func:`~cxrsearch.index.record.ensure_collection`);
3. ask the store which planned point ids exist (deterministic UUIDv5 ids) and skip those, unless
   ``reindex``; points already there must come from the same checkpoint;
4. for each batch: decode its radiographs (the next batch is decoded in a background thread while
   this one is encoded), encode, upsert. A batch is written before the next starts, so a run killed
   at any moment (even by SIGKILL) loses at most one batch, and running it again finishes the job
   with the exact count and no duplicates.

Per-file failures never stop the run: they are written to a JSON-lines file as they happen and
returned in the :class:`~cxrsearch.index.report.IndexReport`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cxrsearch.data.openi import locate_reports
from cxrsearch.errors import ConfigError, ModelError, StoreError
from cxrsearch.index.options import IndexOptions
from cxrsearch.index.plan import IndexItem, Plan, build_plan
from cxrsearch.index.points import Decoded, decode_items, encode_points
from cxrsearch.index.record import (
    ModelRecord,
    PayloadPaths,
    check_images_trained,
    check_same_model,
    ensure_collection,
    stale_report_points,
)
from cxrsearch.index.report import Failure, FailureLog, IndexReport
from cxrsearch.progress import ProgressCallback, ProgressEvent
from cxrsearch.store.base import Store, point_id
from cxrsearch.store.schema import Bm25Spec

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.encode import Encoder


def index_studies(
    options: IndexOptions,
    store: Store,
    checkpoint: Checkpoint | Encoder | str | Path,
    progress: ProgressCallback | None = None,
    *,
    plan: Plan | None = None,
) -> IndexReport:
    """Index the studies of ``options.source`` into ``options.collection`` of ``store``.

    ``checkpoint``: a loaded checkpoint, an :class:`~cxrsearch.model.encode.Encoder` built from one,
    or a checkpoint directory. ``plan``: the points to write when the caller has already read the
    source (:func:`~cxrsearch.index.plan.build_plan`, or :func:`~cxrsearch.index.plan.plan_items` of
    studies it read), re-keyed for ``options.collection``: nothing is read again (``limit`` and
    ``metadata`` are not used; ``source`` and ``images_dir`` still give the payloads' roots, and a
    plan with radiographs needs ``images_dir``). ``None``: :func:`~cxrsearch.index.plan.build_plan`
    of ``options``, once the checkpoint is loaded. ``progress`` gets ``ProgressEvent("index", done,
    total, name=collection)`` before the first batch and after each one: ``total`` is the number of
    points this run encodes (planned minus already stored), ``done`` how many were handled (and
    stored). Raises only for problems with the whole run (unreadable source, store or checkpoint,
    vector size mismatch); per-file problems are in the returned report.
    """
    started = time.perf_counter()
    _claim_collection(store, options.collection)
    encoder, record = _load_encoder(checkpoint, radiographs=options.images_dir is not None)
    plan = (build_plan(options) if plan is None else plan).for_collection(options.collection)
    if plan.has_images and options.images_dir is None:
        raise ConfigError("the plan pairs radiographs but no images folder is given: pass its images_dir")
    target = _prepare_collection(store, options, encoder, record, plan)
    log = FailureLog(options.resolved_failures_dir(), options.collection)
    try:
        for failure in plan.failures:
            log.add(failure)
        indexed, inverted = _run_batches(encoder, target, options.batch_size, log, progress)
    finally:
        log.close()
    return _report(target, plan, indexed, inverted, log, time.perf_counter() - started)


@dataclass(frozen=True)
class _Target:
    """Where and how a run writes: the collection of ``store``, the checkpoint ``record`` its points
    carry, the collection's ``bm25`` spec, the payload ``paths`` roots, the planned point ids already
    stored (``existing``, skipped) and the items still to write (``todo``)."""

    store: Store
    collection: str
    record: ModelRecord
    bm25: Bm25Spec | None
    paths: PayloadPaths
    existing: frozenset[str]
    todo: tuple[IndexItem, ...]


def _claim_collection(store: Store, collection: str) -> None:
    """Open an existing collection first: one another process holds is refused now, not after the
    checkpoint is loaded and every report parsed (and the lock is held for the whole run from here)."""
    if collection in store.list_collections():
        store.collection_info(collection)


def _load_encoder(checkpoint: Checkpoint | Encoder | str | Path, *, radiographs: bool) -> tuple[Encoder, ModelRecord]:
    """The encoder of ``checkpoint`` and the record its points carry; ModelError without a saved
    checkpoint, or when ``radiographs`` are indexed with one that never learned from them."""
    from cxrsearch.model.encode import Encoder

    encoder = checkpoint if isinstance(checkpoint, Encoder) else Encoder(checkpoint)
    if encoder.checkpoint is None:
        raise ModelError("indexing needs a saved checkpoint (its path and fingerprint are stored with the points)")
    if radiographs:
        check_images_trained(encoder.checkpoint.info, "indexing radiographs")
    return encoder, ModelRecord.of(encoder.checkpoint.info)


def _prepare_collection(
    store: Store, options: IndexOptions, encoder: Encoder, record: ModelRecord, plan: Plan
) -> _Target:
    """Create or check the collection, find the planned points already stored (same checkpoint
    only), record the run's roots once it is accepted, and return what is left to write."""
    collection = options.collection
    ensure_collection(
        store,
        collection,
        options.schema,
        encoder.config.fusion.joint_dim,
        record.checkpoint,
        label_size=len(encoder.labels),
        texts=[item.text for item in plan.items],
    )
    bm25 = store.collection_info(collection).schema.bm25
    paths = _payload_paths(store, collection, options)
    planned_ids = [item.point_id for item in plan.items]
    existing = set() if options.reindex else store.existing_ids(collection, planned_ids)
    if existing:
        check_same_model(store, collection, sorted(existing), record)
    store.set_roots(collection, {**paths.roots(), "checkpoint": record.checkpoint})  # only once the run is accepted
    todo = tuple(item for item in plan.items if item.point_id not in existing)
    return _Target(store, collection, record, bm25, paths, frozenset(existing), todo)


def _report(target: _Target, plan: Plan, indexed: int, inverted: int, log: FailureLog, seconds: float) -> IndexReport:
    """The :class:`IndexReport` of a finished run (``count`` and ``stale`` asked of the store now)."""
    store, collection, record = target.store, target.collection, target.record
    imaged_studies = sorted({item.study.uid for item in plan.items if item.has_image})
    stale = stale_report_points(store, collection, [point_id(collection, uid) for uid in imaged_studies])
    image_points = sum(1 for item in plan.items if item.has_image)
    return IndexReport(
        collection=collection,
        store=store.location,
        studies=plan.studies,
        image_refs=plan.image_refs,
        images_missing=plan.images_missing,
        planned=len(plan.items),
        image_points=image_points,
        report_points=len(plan.items) - image_points,
        skipped_existing=len(target.existing),
        indexed=indexed,
        inverted=inverted,
        empty=plan.empty,
        failed=len(log.failures),
        count=store.count(collection),
        stale=len(stale),
        seconds=seconds,
        model=record.model,
        checkpoint=record.checkpoint,
        fingerprint=record.fingerprint,
        failures=tuple(log.failures),
        failures_path=log.path,
    )


def _run_batches(
    encoder: Encoder, target: _Target, batch_size: int, log: FailureLog, progress: ProgressCallback | None
) -> tuple[int, int]:
    """Encode and upsert ``target.todo`` batch by batch (in :func:`encoding_order`); returns the
    points written and how many of their radiographs were stored as negatives (and inverted)."""
    total, done, written, inverted = len(target.todo), 0, 0, 0
    if progress is not None:
        progress(ProgressEvent("index", 0, total, name=target.collection))
    ordered = encoding_order(target.todo)
    chunks = (ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size))
    for size, (decoded, failures) in _decoded_batches(chunks):
        for failure in failures:
            log.add(failure)
        inverted += sum(1 for entry in decoded if entry.image is not None and entry.image.inverted)
        if decoded:
            written += _write_batch(encoder, target, decoded, log)
        done += size
        if progress is not None:
            progress(ProgressEvent("index", done, total, name=target.collection))
    return written, inverted


def _write_batch(encoder: Encoder, target: _Target, decoded: list[Decoded], log: FailureLog) -> int:
    """Encode one decoded batch and upsert its points (encoding failures go to ``log``); the points written."""
    points, failures = encode_points(encoder, decoded, target.record, target.bm25, target.paths)
    for failure in failures:
        log.add(failure)
    if points:
        target.store.upsert(target.collection, points, batch=len(points))
    return len(points)


def _payload_paths(store: Store, collection: str, options: IndexOptions) -> PayloadPaths:
    """The folders payload paths are relative to (recorded as the collection's roots). Radiographs
    of an earlier run under another images folder would no longer resolve: refused unless ``--reindex``."""

    reports = locate_reports(options.source).expanduser().absolute().parent
    images = None if options.images_dir is None else Path(options.images_dir).expanduser().absolute()
    before = store.roots(collection).get("images")
    if images is not None and before is not None and before != str(images) and not options.reindex:
        raise StoreError(
            f"collection {collection!r} holds radiographs indexed from {before}, not {images}: their "
            "paths are stored relative to that folder; index with that --images folder, or pass "
            "--reindex to re-encode every point from this one",
            path=collection,
        )
    return PayloadPaths(reports=reports, images=images)


def encoding_order(items: Sequence[IndexItem]) -> list[IndexItem]:
    """Image points first, then report points; within each, shortest report text first, so that a
    batch holds texts of similar length and little compute goes to padding (batches are padded to
    their longest text). Deterministic, so a resumed run batches the same way."""
    ranked = sorted(enumerate(items), key=lambda pair: (not pair[1].has_image, len(pair[1].text), pair[0]))
    return [item for _, item in ranked]


def _decoded_batches(batches: Iterable[list[IndexItem]]) -> Iterator[tuple[int, tuple[list[Decoded], list[Failure]]]]:
    """``(batch size, decode_items(batch))`` per batch, decoding one batch ahead in a thread
    (image decoding releases the GIL in pydicom/Pillow codecs; torch releases it while encoding)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrsearch-decode") as pool:
        pending = None
        for batch in batches:
            future = (len(batch), pool.submit(decode_items, batch))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = future
        if pending is not None:
            yield pending[0], pending[1].result()
