"""The case base an evaluation searches: every study indexed into an embedded Qdrant collection.

Retrieval is evaluated through the product's own path (``cxrsearch.index.index_studies`` with the
plan :mod:`cxrsearch.evaluate.run` built once -> qdrant-edge -> ``cxrsearch.search.search``), not a
parallel numpy re-implementation, so the numbers are what users get. All studies of the data source
are indexed once per (checkpoint, data) pair into

    <cache>/evaluate/store/eval-<checkpoint fingerprint[:12]>-<data fingerprint[:12]>

(``<cache>`` = ``CXRSEARCH_CACHE`` or the per-user cache dir). The collection is reused by later
runs with the same weights and data (indexing resumes and skips what is stored); deleting the
``evaluate`` folder is always safe. Queries then filter on the ``split`` payload: the train split is
the "historical cases", the evaluated split the within-split pool.

:func:`load_cases` reads the stored points back (vectors, views, predicted probabilities) as
:class:`Case` records, one per study, for classification and the cross-modal protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch import paths
from cxrsearch.errors import StoreError
from cxrsearch.index.record import image_file

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.data.openi import Study
    from cxrsearch.store.base import SparseVector, Store

FRONTAL_VIEWS = ("PA", "AP")


def store_root(cache_dir: str | Path | None = None) -> Path:
    """Where evaluation collections live: ``<cache>/evaluate/store``."""

    return paths.cache_dir(cache_dir) / "evaluate" / "store"


def data_fingerprint(studies: Sequence[Study], images: Mapping[str, Path] | None) -> str:
    """sha256 over what indexing reads: per study (report order) its uid, split, model text, labels,
    and the image ids found with their file sizes."""
    digest = hashlib.sha256()
    for study in studies:
        found = []
        if images is not None:
            for image_id in study.image_ids:
                path = images.get(image_id)
                if path is not None:
                    found.append([image_id, Path(path).stat().st_size])
        record = [study.uid, study.split, study.report_text(), list(study.labels), found]
        digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def collection_name(checkpoint_fingerprint: str, data_fp: str) -> str:
    """``eval-<12 hex>-<12 hex>``: one collection per (weights, data) pair."""
    return f"eval-{checkpoint_fingerprint[:12]}-{data_fp[:12]}"


@dataclass(frozen=True)
class CasePoint:
    """One stored point of a study: an image point (``image_id`` set) or its report point.

    ``vectors``: name -> ``(D,)`` float32 (``image`` / ``text`` / ``joint``, whichever exist);
    ``probs``: ``(L,)`` predicted probabilities in ``labels`` order; ``view``: ``PA``/``AP``/
    ``LATERAL`` or ``None`` when unknown.
    """

    id: str
    image_id: str | None
    image_path: str | None
    view: str | None
    vectors: Mapping[str, np.ndarray | SparseVector]
    probs: np.ndarray


@dataclass(frozen=True)
class Case:
    """A study as stored: its split and points (image points first, by image id)."""

    uid: str
    split: str
    points: tuple[CasePoint, ...]

    @property
    def image_points(self) -> tuple[CasePoint, ...]:
        return tuple(p for p in self.points if p.image_id is not None)

    def query_image(self) -> CasePoint | None:
        """The radiograph an image query of this study uses: its first frontal image (by image id),
        else its first image; ``None`` without images."""
        images = self.image_points
        frontal = [p for p in images if p.view in FRONTAL_VIEWS]
        return frontal[0] if frontal else (images[0] if images else None)

    def probs(self) -> np.ndarray:
        """``(L,)`` study-level prediction: the mean over the study's points (one per radiograph, or
        the report point)."""
        return np.mean([p.probs for p in self.points], axis=0)


def load_cases(
    store: Store, collection: str, labels: Sequence[str], images: str | Path | None = None
) -> dict[str, Case]:
    """Every stored study of ``collection`` as a :class:`Case` (read with its vectors). Points store
    image paths relative to the folder they were indexed from: ``images``, else the collection's
    recorded images root (:func:`cxrsearch.index.record.image_file`)."""
    grouped: dict[str, list[CasePoint]] = {}
    splits: dict[str, str] = {}
    roots = store.roots(collection)
    for point in store.scroll(collection, with_vectors=True, batch=512):
        payload = point.payload
        uid = payload.get("study_id")
        probs = payload.get("probs")
        if not isinstance(uid, str) or not isinstance(probs, dict):
            raise StoreError(
                f"point {point.id} lacks study_id/probs: not written by `cxrsearch index`", path=collection
            )
        missing = [label for label in labels if label not in probs]
        if missing:
            raise StoreError(
                f"point {point.id} has no probability for {missing} (another label vocabulary?)", path=collection
            )
        splits[uid] = str(payload.get("split"))
        grouped.setdefault(uid, []).append(
            CasePoint(
                id=point.id,
                image_id=payload.get("image_id"),
                image_path=_image_path(payload, roots, images, collection),
                view=payload.get("view"),
                vectors=dict(point.vectors),
                probs=np.array([probs[label] for label in labels], dtype=np.float64),
            )
        )
    cases = {}
    for uid, points in grouped.items():
        points.sort(key=lambda p: (p.image_id is None, p.image_id or ""))
        cases[uid] = Case(uid=uid, split=splits[uid], points=tuple(points))
    return cases


def _image_path(
    payload: Mapping[str, Any], roots: dict[str, str], images: str | Path | None, collection: str
) -> str | None:
    path = image_file(dict(payload), roots, None if images is None else Path(images), where=collection)
    return None if path is None else str(path)
