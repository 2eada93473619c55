"""``search(spec, store, collection, checkpoint)``: a :class:`QuerySpec` -> query vectors -> hits.

How each mode queries the named vectors (every query is filtered inside the engine, see
docs/search.md):

=============  ====================================  ==========================================
mode           query embedding                       searched against
=============  ====================================  ==========================================
text           text tower (the report encoder)       ``text`` (reports) and ``image``
                                                     (radiographs, cross-modal), fused by
                                                     reciprocal rank fusion (Qdrant prefetch+RRF)
image          image tower (same decode and          ``image``
               preprocessing as indexing)
text+image     fusion of both                        ``joint``
like           the stored ``joint`` vector of the    ``joint``, the example's own study excluded
               example case (no model needed)
=============  ====================================  ==========================================
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import ModelError, QueryError, StoreError
from cxrsearch.index.record import recorded_model
from cxrsearch.search.spec import QuerySpec, example_keys
from cxrsearch.store.base import Filter, Hit, Point, Store, point_id

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.encode import Encoder

MODE_VECTORS: dict[str, tuple[str, ...]] = {
    "text": ("text", "image"),
    "image": ("image",),
    "text+image": ("joint",),
    "like": ("joint",),
}
"""Which named vectors each mode searches (the query embedding is the same for all of them)."""


def search(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Checkpoint | Encoder | str | Path | None = None,
) -> list[Hit]:
    """The ``spec.k`` best hits for ``spec`` in ``collection``, best first; every hit passes the filters.

    ``checkpoint`` (a loaded checkpoint, an Encoder, or a checkpoint directory) must be the one
    the collection was indexed with; ``None`` loads the one recorded in the collection's points.
    ``like`` queries need no checkpoint.
    """
    if spec.mode == "like":
        example = find_example(store, collection, spec.like or "")
        study = str(example.payload.get("study_id", ""))
        if "joint" not in example.vectors:
            raise StoreError(f"point {example.id} has no joint vector", path=collection)
        flt = spec.filter(exclude_study_ids=(study,) if study else ())
        return _checked(query_store(store, collection, "like", example.vectors["joint"], flt, spec.k), flt, collection)

    encoder = encoder_for(store, collection, checkpoint)
    image = [_decode(spec.image)] if spec.image is not None else None
    text = [_query_text(spec.text)] if spec.text is not None else None
    encoded = encoder.encode(images=image, texts=text)
    vector = {"text": encoded.text, "image": encoded.image, "text+image": encoded.joint}[spec.mode]
    flt = spec.filter()
    return _checked(query_store(store, collection, spec.mode, _first(vector, spec.mode), flt, spec.k), flt, collection)


def query_store(store: Store, collection: str, mode: str, vector: np.ndarray, flt: Filter | None, limit: int) -> list[Hit]:
    """The store query of ``mode`` for its query ``vector`` (the table above, :data:`MODE_VECTORS`):
    one named vector -> nearest neighbours; several -> one prefetch each, fused by RRF. Callers that
    encode many queries in batches (evaluation) use this to query exactly as :func:`search` does."""
    names = MODE_VECTORS[mode]
    if len(names) == 1:
        return store.search(collection, names[0], vector, flt, limit)
    return store.search_fused(collection, [(name, vector) for name in names], flt, limit)


def encoder_for(store: Store, collection: str, checkpoint: Checkpoint | Encoder | str | Path | None) -> Encoder:
    """An Encoder for ``checkpoint`` (default: the one the collection records), refusing a checkpoint
    whose weights differ from those that encoded the collection: their embeddings do not compare."""
    from cxrsearch.model.encode import Encoder

    record = recorded_model(store, collection)
    if checkpoint is None:
        if record is None:
            raise QueryError(f"collection {collection!r} is empty: index it first, or pass --model CKPT", path=store.location)
        if not (Path(record.checkpoint) / "config.json").is_file():
            raise QueryError(f"the checkpoint this collection was indexed with is gone ({record.checkpoint}); "
                             "pass --model CKPT (the same weights, e.g. a copy)", path=collection)
        checkpoint = record.checkpoint
    try:
        encoder = checkpoint if isinstance(checkpoint, Encoder) else Encoder(checkpoint)
    except ModelError as exc:
        raise QueryError(f"cannot load the checkpoint ({exc}); pass --model CKPT", path=collection) from None
    if record is not None and encoder.fingerprint != record.fingerprint:
        raise QueryError(
            f"checkpoint {_where(encoder)} (fingerprint {str(encoder.fingerprint)[:12]}) is not the one collection "
            f"{collection!r} was indexed with ({record.checkpoint}, {record.fingerprint[:12]}): embeddings of "
            "different weights are not comparable; search with that checkpoint or re-index (`cxrsearch index --reindex`)",
            path=collection)
    return encoder


def find_example(store: Store, collection: str, like: str) -> Point:
    """The point ``--like`` names, with its vectors: a point id, an image id, or a study id (its
    image point with the smallest image id, else its report point)."""
    image_id, study_id = example_keys(like)
    candidates = [like] if _is_uuid(like) else []
    candidates += [point_id(collection, key) for key in (image_id, study_id) if key]
    found = store.retrieve(collection, candidates, with_vectors=True) if candidates else []
    if found:
        return found[0]
    if study_id is not None:
        points = list(store.scroll(collection, Filter(study_ids=(study_id,)), with_vectors=True))
        if points:
            return min(points, key=lambda p: str(p.payload.get("image_id") or ""))
    raise QueryError(f"no indexed case {like!r} in collection {collection!r} (give a point id, an image id such "
                     "as CXR3029_IM-1404-1001, or a study id such as CXR3029)", path=store.location)


def _query_text(text: str | None) -> str:
    """The query as the model reads reports (same cleaning, see :mod:`cxrsearch.text.report`)."""
    from cxrsearch.text.report import report_text

    cleaned = report_text(text, None)
    if not cleaned:
        raise QueryError(f"--text {text!r} has no words left after cleaning")
    return cleaned


def _decode(path: Path):
    from cxrsearch.image.decode import decode_image

    return decode_image(path)


def _first(matrix: np.ndarray | None, what: str) -> np.ndarray:
    if matrix is None:  # pragma: no cover - the Encoder always returns the modality it was given
        raise ModelError(f"the model returned no {what} embedding")
    return matrix[0]


def _checked(hits: list[Hit], flt: Filter, collection: str) -> list[Hit]:
    """The engine applies the filter; this re-checks every hit so that a backend bug can never show
    a user a case that violates it."""
    for hit in hits:
        if not flt.matches(hit.payload):
            raise StoreError(f"the store returned point {hit.id}, which does not pass the query filter "
                             "(a backend bug; please report it)", path=collection)
    return hits


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _where(encoder: Encoder) -> str:
    return str(encoder.checkpoint.path) if encoder.checkpoint is not None else "(in-memory model)"

