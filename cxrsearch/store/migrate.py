"""Copy a collection between stores (typically the embedded store -> a Qdrant server).

Points keep their ids (under another name, ``target_collection``, they get that collection's
deterministic ids, :func:`~cxrsearch.store.base.point_id`, so a later ``cxrsearch index`` into the
copy replaces them), so a re-run replaces instead of duplicating and an interrupted copy is
finished by running it again. The copy is verified: the target must end with exactly the source's
point count, or a :class:`StoreError` says by how much it differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrsearch.errors import StoreError
from cxrsearch.progress import ProgressCallback, ProgressEvent
from cxrsearch.store.base import Point, Store, point_id
from cxrsearch.store.checks import batched


@dataclass(frozen=True)
class MigrationResult:
    """``copied`` points were upserted; both stores hold ``points`` points afterwards."""

    collection: str
    source: str
    target: str
    copied: int
    points: int
    created: bool


def migrate_collection(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    batch: int = 256,
    progress: ProgressCallback | None = None,
) -> MigrationResult:
    """Copy ``collection`` from ``source`` into ``target`` (same schema and vector size).

    ``progress`` gets a ``ProgressEvent("migrate", done, total, name=collection)`` after every
    upserted batch (for a progress bar).
    """
    name = target_collection or collection
    info = source.collection_info(collection)
    embedding, labels = info.schema.model_sizes(info.vector_sizes)
    created = target.create_collection(name, info.schema, embedding, labels)
    total = info.points_count
    copied = 0
    for chunk in batched(source.scroll(collection, with_vectors=True, batch=batch), batch):
        if name != collection:
            chunk = [_rekeyed(name, point) for point in chunk]
        copied += target.upsert(name, chunk, batch=batch)
        if progress is not None:
            progress(ProgressEvent("migrate", copied, total, name=collection))
    source_count = source.count(collection)
    target_count = target.count(name)
    if target_count != source_count:
        raise StoreError(
            f"copy of {collection!r} is incomplete: the target holds {target_count} points, the source "
            f"{source_count} (points added to either side meanwhile? re-run, or drop the target collection)",
            path=target.location,
        )
    return MigrationResult(
        collection=collection,
        source=source.location,
        target=f"{target.location} ({name})",
        copied=copied,
        points=target_count,
        created=created,
    )


def _rekeyed(collection: str, point: Point) -> Point:
    """``point`` with the id it has in ``collection`` (its key: image id, else study id)."""
    key = point.payload.get("image_id") or point.payload.get("study_id")
    if not isinstance(key, str) or not key:
        return point
    return Point(point_id(collection, key), point.vectors, point.payload)
