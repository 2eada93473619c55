"""One batch of :class:`~cxrsearch.index.plan.IndexItem` -> decoded images -> embeddings -> :class:`Point`.

Named vectors of a point (all from one :meth:`Encoder.encode` call, so they share preprocessing):

=================  =========================  ============================
point              vectors                    encoded from
=================  =========================  ============================
image + report     ``image``, ``text``,       the radiograph and the report
                   ``joint``, ``bm25``
image, no text     ``image``, ``joint``       the radiograph alone
report only        ``text``, ``joint``,       the report alone
                   ``bm25``
=================  =========================  ============================

Every point also has ``label_probs``, the predicted label probabilities (the same numbers as the
``probs`` payload, one dimension per label in the checkpoint's order, compared by dot product):
label-aware similarity is a prefetch of hybrid search. ``bm25`` is the report's sparse BM25 vector
(:mod:`cxrsearch.text.bm25`, with the collection's parameters), absent when the report has no text.

Payload (JSON): ``study_id``, ``image_id`` (``None`` for a report point), ``kind`` (``"image"`` |
``"report"``), ``view`` (``PA``/``AP``/``LATERAL`` from the DICOM *ViewPosition* tag, else from the
metadata table, else ``None``) with ``view_source`` (``"dicom"`` | ``"metadata"`` | ``None``),
``split``, ``findings``, ``impression``, ``labels_true`` (from MeSH), ``labels`` (predicted with the
checkpoint's thresholds), ``probs`` (label -> probability), ``model``, ``checkpoint``,
``checkpoint_fingerprint``, ``source`` (the report file) and ``image_path`` (both relative to the
folders the collection records, :class:`~cxrsearch.index.record.PayloadPaths`: no absolute path of
this machine is stored in a point), ``inverted`` (the
radiograph was stored as a negative and inverted, :mod:`cxrsearch.image.polarity`). Nothing is read from a
DICOM header except the view: no name, id, birth date, accession number or UID is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import CxrSearchError
from cxrsearch.index.plan import IndexItem
from cxrsearch.index.record import BM25_VECTOR, HYBRID_VECTOR, ModelRecord, PayloadPaths
from cxrsearch.index.report import Failure
from cxrsearch.store.base import Point, SparseVector, Vector
from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import embed_documents

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.model.encode import Encoded, Encoder


@dataclass(frozen=True)
class Decoded:
    """An item with its decoded radiograph (``None`` for a report point)."""

    item: IndexItem
    image: DecodedImage | None


def decode_items(items: Sequence[IndexItem]) -> tuple[list[Decoded], list[Failure]]:
    """Decode the radiographs of ``items``; a file that cannot be decoded becomes a :class:`Failure`."""
    from cxrsearch.image.decode import decode_image

    done: list[Decoded] = []
    failures: list[Failure] = []
    for item in items:
        if item.image_path is None:
            done.append(Decoded(item, None))
            continue
        try:
            done.append(Decoded(item, decode_image(item.image_path)))
        except CxrSearchError as exc:
            failures.append(_failure(item, exc))
    return done, failures


def encode_points(
    encoder: Encoder,
    batch: Sequence[Decoded],
    record: ModelRecord,
    bm25: Bm25Spec | None = None,
    paths: PayloadPaths | None = None,
) -> tuple[list[Point], list[Failure]]:
    """Points for a decoded batch. Inputs are grouped by which modalities they have (one forward
    pass per group). When a group fails (e.g. an image the preprocessing refuses), its inputs are
    retried one at a time so that only the offending files fail. ``paths``: the roots payload paths
    are written relative to (``None``: absolute, as given)."""
    groups: dict[tuple[bool, bool], list[Decoded]] = {}
    for entry in batch:
        groups.setdefault((entry.image is not None, bool(entry.item.text)), []).append(entry)
    points: list[Point] = []
    failures: list[Failure] = []
    for group in groups.values():
        try:
            points.extend(_encode_group(encoder, group, record, bm25, paths))
        except CxrSearchError:
            for entry in group:
                try:
                    points.extend(_encode_group(encoder, [entry], record, bm25, paths))
                except CxrSearchError as exc:
                    failures.append(_failure(entry.item, exc))
    return points, failures


def _encode_group(
    encoder: Encoder,
    group: Sequence[Decoded],
    record: ModelRecord,
    bm25: Bm25Spec | None = None,
    paths: PayloadPaths | None = None,
) -> list[Point]:
    with_image = group[0].image is not None
    with_text = bool(group[0].item.text)
    encoded = encoder.encode(
        images=[cast("DecodedImage", entry.image) for entry in group] if with_image else None,
        texts=[entry.item.text for entry in group] if with_text else None,
        batch_size=len(group),
    )
    sparse = embed_documents([entry.item.text for entry in group], bm25) if bm25 is not None and with_text else None
    return [
        _point(entry, encoded, row, record, None if sparse is None else sparse[row], paths)
        for row, entry in enumerate(group)
    ]


def _point(
    entry: Decoded,
    encoded: Encoded,
    row: int,
    record: ModelRecord,
    bm25: SparseVector | None,
    paths: PayloadPaths | None = None,
) -> Point:
    vectors: dict[str, Vector] = {"joint": encoded.joint[row], HYBRID_VECTOR: encoded.probs[row].astype(np.float32)}
    if encoded.image is not None:
        vectors["image"] = encoded.image[row]
    if encoded.text is not None:
        vectors["text"] = encoded.text[row]
    if bm25 is not None:
        vectors[BM25_VECTOR] = bm25
    return Point(id=entry.item.point_id, vectors=vectors, payload=payload(entry, encoded, row, record, paths))


def payload(
    entry: Decoded, encoded: Encoded, row: int, record: ModelRecord, paths: PayloadPaths | None = None
) -> dict[str, Any]:
    """The payload of one point (see the module docstring)."""
    paths = paths or PayloadPaths()
    item, study = entry.item, entry.item.study
    view, view_source = None, None
    if entry.image is not None and entry.image.view is not None:
        view, view_source = entry.image.view, "dicom"
    elif item.table_view is not None:
        view, view_source = item.table_view, "metadata"
    return {
        "study_id": study.uid,
        "image_id": item.image_id,
        "kind": "image" if item.has_image else "report",
        "view": view,
        "view_source": view_source,
        "split": study.split,
        "findings": study.findings,
        "impression": study.impression,
        "labels_true": list(study.labels),
        "labels": list(encoded.predicted[row]),
        "probs": {label: round(float(p), 6) for label, p in zip(encoded.labels, encoded.probs[row])},
        **record.payload(),
        "source": paths.source(study.source),
        "image_path": None if item.image_path is None else paths.image(item.image_path),
        "inverted": entry.image is not None and entry.image.inverted,
    }


def _failure(item: IndexItem, exc: CxrSearchError) -> Failure:
    return Failure(
        kind="image" if item.has_image else "report",
        path=str(item.image_path or item.study.source),
        error=exc.message,
        study_id=item.study.uid,
        image_id=item.image_id,
    )
