"""Which checkpoint a collection was indexed with, and making sure a collection fits a checkpoint.

The record lives **in the points**: every payload carries ``model`` (config name), ``checkpoint``
(the checkpoint directory, absolute) and ``checkpoint_fingerprint`` (sha256 of its weights). So the
record travels with the collection to a server (``cxrsearch collections migrate``), survives an
interrupted run, and cannot disagree with the vectors it describes. ``cxrsearch search`` without
``--model`` loads the checkpoint the points name; embeddings from two checkpoints are never mixed
(:func:`check_same_model`) nor compared (the search refuses a ``--model`` with another fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cxrsearch.errors import StoreError
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
        return cls(model=info.config.name, checkpoint=str(info.path.expanduser().resolve()), fingerprint=info.fingerprint)

    def payload(self) -> dict[str, str]:
        """The payload fields every point carries."""
        return {"model": self.model, "checkpoint": self.checkpoint, "checkpoint_fingerprint": self.fingerprint}

    @classmethod
    def from_payload(cls, payload: dict, where: str) -> ModelRecord:
        try:
            return cls(model=str(payload["model"]), checkpoint=str(payload["checkpoint"]),
                       fingerprint=str(payload["checkpoint_fingerprint"]))
        except KeyError as exc:
            raise StoreError(f"point payload has no {exc.args[0]!r}: not written by `cxrsearch index`", path=where) from None


def recorded_model(store: Store, collection: str) -> ModelRecord | None:
    """The model record of the collection's first point, ``None`` for an empty collection."""
    for point in store.scroll(collection, batch=1):
        return ModelRecord.from_payload(dict(point.payload), where=collection)
    return None


def check_same_model(store: Store, collection: str, ids: Sequence[str], record: ModelRecord) -> None:
    """Refuse to add to points ``ids`` (already stored) encoded by another checkpoint."""
    for point in store.retrieve(collection, list(ids)):
        other = ModelRecord.from_payload(dict(point.payload), where=collection)
        if other.fingerprint != record.fingerprint:
            raise StoreError(
                f"collection {collection!r} was indexed with checkpoint {other.checkpoint} ({other.model}, "
                f"fingerprint {other.fingerprint[:12]}), not {record.checkpoint} ({record.fingerprint[:12]}): "
                "embeddings of two checkpoints cannot be mixed; pass --reindex to re-encode every point, "
                "or index into another --collection", path=collection)


def ensure_collection(store: Store, collection: str, schema_name: str, vector_size: int, checkpoint: str,
                      label_size: int | None = None, texts: Sequence[str] = ()) -> bool:
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
        raise StoreError(f"collection {collection!r} has no {', '.join(missing)} vector(s) (it has "
                         f"{', '.join(sizes)}): not a cases collection; index into another --collection", path=collection)
    if HYBRID_VECTOR not in sizes or BM25_VECTOR not in info.schema.sparse_names:
        raise StoreError(f"collection {collection!r} was made by an older cxrsearch, without the label_probs and "
                         "bm25 vectors of hybrid search: index into a new --collection, or drop this one and index "
                         f"again (`cxrsearch collections drop {collection}`; see docs/search.md, upgrading)",
                         path=collection)
    labels = sizes[HYBRID_VECTOR]
    sizes = {name: size for name, size in sizes.items() if name in VECTOR_NAMES}
    wrong = {name: size for name, size in sizes.items() if size != vector_size}
    if wrong:
        size = next(iter(wrong.values()))
        raise StoreError(f"collection {collection!r} stores {size}-d vectors but checkpoint {checkpoint} produces "
                         f"{vector_size}-d embeddings; index into another --collection, or drop this one "
                         f"(`cxrsearch collections drop {collection}`)", path=collection)
    if label_size is not None and labels != label_size:
        raise StoreError(f"collection {collection!r} stores {labels} label probabilities but checkpoint {checkpoint} "
                         f"has {label_size} labels; index into another --collection", path=collection)
    return False


def stale_report_points(store: Store, collection: str, report_ids: Sequence[str]) -> list[str]:
    """Ids among ``report_ids`` (report points of studies that now have image points) still stored."""
    return sorted(store.existing_ids(collection, list(report_ids))) if report_ids else []

