"""Which checkpoint a collection was indexed with, and making sure a collection fits a checkpoint.

The record lives **in the points**: every payload carries ``model`` (config name), ``checkpoint``
(the checkpoint directory's *name*) and ``checkpoint_fingerprint`` (sha256 of its weights). So the
record travels with the collection to a server (``cxrsearch collections migrate``), survives an
interrupted run, and cannot disagree with the vectors it describes. Embeddings from two checkpoints
are never mixed (:func:`check_same_model`) nor compared (the search refuses a ``--model`` with
another fingerprint).

**No absolute path of this machine is stored in a point** (a migrated collection would show a
server's users the indexer's directory layout and user name): ``image_path`` and ``source`` are
relative to the folders the run read (:class:`PayloadPaths`), and those folders and the checkpoint's
path are the collection's local *roots* (:meth:`~cxrsearch.store.base.Store.roots`: beside an
embedded collection, never on a server). ``cxrsearch search`` without ``--model`` loads the
checkpoint the roots name; ``explain`` finds radiographs under the images root (or ``--images``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import ModelError, QueryError, StoreError
from cxrsearch.store.base import Store
from cxrsearch.store.schema import load_schema
from cxrsearch.text.bm25 import average_length

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import CheckpointInfo

VECTOR_NAMES = ("image", "text", "joint")
"""The embedding vectors every collection used for cases must have (see ``collections/cases.json``)."""
HYBRID_VECTOR = "label_probs"
"""The dense vector of predicted label probabilities (one dimension per label)."""
BM25_VECTOR = "bm25"
"""The sparse BM25 vector of the report."""


@dataclass(frozen=True)
class ModelRecord:
    """The checkpoint that produced a collection's vectors: config name, directory and weight sha256."""

    model: str
    checkpoint: str
    fingerprint: str

    @classmethod
    def of(cls, info: CheckpointInfo) -> ModelRecord:
        return cls(
            model=info.config.name, checkpoint=str(info.path.expanduser().resolve()), fingerprint=info.fingerprint
        )

    def payload(self) -> dict[str, str]:
        """The payload fields every point carries (the checkpoint by its directory's name)."""
        return {
            "model": self.model,
            "checkpoint": Path(self.checkpoint).name,
            "checkpoint_fingerprint": self.fingerprint,
        }

    @classmethod
    def from_payload(cls, payload: dict, where: str) -> ModelRecord:
        try:
            return cls(
                model=str(payload["model"]),
                checkpoint=str(payload["checkpoint"]),
                fingerprint=str(payload["checkpoint_fingerprint"]),
            )
        except KeyError as exc:
            raise StoreError(
                f"point payload has no {exc.args[0]!r}: not written by `cxrsearch index`", path=where
            ) from None


def recorded_model(store: Store, collection: str) -> ModelRecord | None:
    """The model record of the collection's first point, ``None`` for an empty collection; its
    ``checkpoint`` is the local path the collection's roots record (else the name the points carry)."""
    for point in store.scroll(collection, batch=1):
        record = ModelRecord.from_payload(dict(point.payload), where=collection)
        if not Path(record.checkpoint).is_absolute():  # absolute: a collection of cxrsearch <= 0.1
            local = store.roots(collection).get("checkpoint")
            if local is not None:
                record = replace(record, checkpoint=local)
        return record
    return None


@dataclass(frozen=True)
class PayloadPaths:
    """The folders an index run read: payload paths are written relative to them (POSIX form).

    ``reports``: the folder holding the report archive or XML folder; ``images``: the radiograph
    folder (``--images``). ``None`` (or a path outside the root): the path is written as given."""

    reports: Path | None = None
    images: Path | None = None

    def roots(self) -> dict[str, str]:
        out = {}
        if self.reports is not None:
            out["reports"] = str(self.reports)
        if self.images is not None:
            out["images"] = str(self.images)
        return out

    def source(self, source: str) -> str:
        """``/data/openi/NLMCXR_reports.tgz:ecgen-radiology/1.xml`` -> ``NLMCXR_reports.tgz:ecgen-radiology/1.xml``."""
        if self.reports is not None and source.startswith(str(self.reports) + os.sep):
            return Path(source[len(str(self.reports)) + 1 :]).as_posix()
        return source

    def image(self, path: Path) -> str:
        if self.images is not None:
            relative = os.path.relpath(path, self.images)
            if not relative.startswith(os.pardir):
                return Path(relative).as_posix()
        return str(path)


def image_file(
    payload: dict[str, Any], roots: dict[str, str], images: Path | None = None, where: str = ""
) -> Path | None:
    """The radiograph file of a point (``None`` for a report point): a relative ``image_path`` is
    joined to ``images`` (``--images``) or the collection's images root; QueryError when neither is
    known. Absolute paths (collections of cxrsearch <= 0.1) are used as stored."""
    raw = payload.get("image_path")
    if not raw:
        return None
    path = Path(str(raw))
    if path.is_absolute():
        return path
    root = images if images is not None else roots.get("images")
    if root is None:
        raise QueryError(
            f"the radiograph {path.as_posix()} is stored relative to the folder it was indexed from, "
            "which this store does not record (a server collection?): pass --images DIR",
            path=where,
        )
    return Path(root) / path


def check_same_model(store: Store, collection: str, ids: Sequence[str], record: ModelRecord) -> None:
    """Refuse to add to points ``ids`` (already stored) encoded by another checkpoint."""
    for point in store.retrieve(collection, list(ids)):
        other = ModelRecord.from_payload(dict(point.payload), where=collection)
        if other.fingerprint != record.fingerprint:
            raise StoreError(
                f"collection {collection!r} was indexed with checkpoint {other.checkpoint} ({other.model}, "
                f"fingerprint {other.fingerprint[:12]}), not {record.checkpoint} ({record.fingerprint[:12]}): "
                "embeddings of two checkpoints cannot be mixed; pass --reindex to re-encode every point, "
                "or index into another --collection",
                path=collection,
            )


def ensure_collection(
    store: Store,
    collection: str,
    schema_name: str,
    vector_size: int,
    checkpoint: str,
    label_size: int | None = None,
    texts: Sequence[str] = (),
) -> bool:
    """Create ``collection`` from schema ``schema_name`` with ``vector_size``-d embeddings and
    ``label_size``-d label vectors when missing (``True``; BM25's ``avg_len`` is set from ``texts``,
    the reports about to be indexed); otherwise check that it has this cxrsearch's vectors
    (``image``/``text``/``joint``, ``label_probs``, ``bm25``) of those sizes."""
    if collection not in store.list_collections():
        schema = load_schema(schema_name)
        if schema.bm25 is not None:
            schema = schema.with_bm25_avg_len(average_length(texts))
        store.create_collection(collection, schema, vector_size, label_size)
        return True
    info = store.collection_info(collection)
    sizes = info.vector_sizes
    missing = [name for name in VECTOR_NAMES if name not in sizes]
    if missing:
        raise StoreError(
            f"collection {collection!r} has no {', '.join(missing)} vector(s) (it has "
            f"{', '.join(sizes)}): not a cases collection; index into another --collection",
            path=collection,
        )
    if HYBRID_VECTOR not in sizes or BM25_VECTOR not in info.schema.sparse_names:
        raise StoreError(
            f"collection {collection!r} was made by an older cxrsearch, without the label_probs and "
            "bm25 vectors of hybrid search: index into a new --collection, or drop this one and index "
            f"again (`cxrsearch collections drop {collection}`; see docs/search.md, upgrading)",
            path=collection,
        )
    labels = sizes[HYBRID_VECTOR]
    sizes = {name: size for name, size in sizes.items() if name in VECTOR_NAMES}
    wrong = {name: size for name, size in sizes.items() if size != vector_size}
    if wrong:
        size = next(iter(wrong.values()))
        raise StoreError(
            f"collection {collection!r} stores {size}-d vectors but checkpoint {checkpoint} produces "
            f"{vector_size}-d embeddings; index into another --collection, or drop this one "
            f"(`cxrsearch collections drop {collection}`)",
            path=collection,
        )
    if label_size is not None and labels != label_size:
        raise StoreError(
            f"collection {collection!r} stores {labels} label probabilities but checkpoint {checkpoint} "
            f"has {label_size} labels; index into another --collection",
            path=collection,
        )
    return False


def stale_report_points(store: Store, collection: str, report_ids: Sequence[str]) -> list[str]:
    """Ids among ``report_ids`` (report points of studies that now have image points) still stored."""
    return sorted(store.existing_ids(collection, list(report_ids))) if report_ids else []


def check_images_trained(info: CheckpointInfo, what: str) -> None:
    """ModelError when ``info``'s checkpoint never learned from radiographs (``what``: the action
    refused, e.g. ``"indexing radiographs"``): its image vectors and image-side labels are random."""

    if info.trained_modalities == ("text",):
        raise ModelError(
            f"{what} needs a checkpoint trained with radiographs; this one learned from reports only "
            "(no images, or a random image tower kept frozen), so its image vectors would be random: "
            "leave out --images for a text-only collection, or train with --images (and a pretrained "
            "or trainable image tower) first",
            path=info.path,
        )
