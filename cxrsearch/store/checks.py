"""Checks and conversions shared by both backends: validate points and query vectors before they
reach Qdrant, make payloads plain JSON, turn backend records into :class:`Point` / :class:`Hit`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.store.base import Hit, Point
from cxrsearch.store.schema import CollectionSchema


def prefetch_limit(limit: int) -> int:
    """How many candidates each RRF input list holds: enough for ranks to matter beyond ``limit``."""
    return max(4 * limit, 50)


def check_limit(limit: int, what: str = "limit") -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise QueryError(f"{what} must be a positive integer, got {limit!r}")


def check_vector_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise StoreError(f"vector size must be a positive integer, got {size!r}")


def check_same_collection(collection: str, where: str, have_schema: CollectionSchema, have_size: int,
                          schema: CollectionSchema, vector_size: int) -> None:
    """``create_collection`` on an existing collection: a no-op for the same vector size and names.

    The existing collection keeps its own schema (e.g. ``cases-hnsw`` created beforehand on a server).
    """
    if have_size != vector_size:
        raise StoreError(f"collection {collection!r} exists with {have_size}-d vectors, not {vector_size}-d "
                         "(built with another model checkpoint? use another collection name, or drop it)", path=where)
    if set(have_schema.vector_names) != set(schema.vector_names):
        raise StoreError(f"collection {collection!r} exists with vectors {', '.join(have_schema.vector_names)}, "
                         f"not {', '.join(schema.vector_names)}", path=where)


def as_query_vector(collection: str, vector_sizes: Mapping[str, int], name: str, vector: Any) -> list[float]:
    """Check a query vector (known name, right size, finite, non-zero) and return it as a list."""
    if name not in vector_sizes:
        raise QueryError(f"collection {collection!r} has no vector {name!r} (it has {', '.join(vector_sizes)})")
    return _checked(collection, vector_sizes[name], name, vector, "query")


def points_vectors(collection: str, vector_sizes: Mapping[str, int],
                   points: Sequence[Point]) -> list[dict[str, list[float]]]:
    """Check a batch of points for upsert (UUID ids, known vector names, right sizes, finite
    non-zero values) and return their vectors as lists, one dict per point.

    Vectors are checked per name as one ``[B, D]`` matrix: validating and converting 3 x 512 floats
    per point one array at a time costs more than the upsert itself.
    """
    for point in points:
        try:
            uuid.UUID(str(point.id))
        except ValueError:
            raise StoreError(f"point id {point.id!r} is not a UUID (use cxrsearch.store.point_id)",
                             path=collection) from None
        if not point.vectors:
            raise StoreError(f"point {point.id} has no vectors", path=collection)
        unknown = sorted(set(point.vectors) - set(vector_sizes))
        if unknown:
            raise StoreError(f"point {point.id} has vector(s) {', '.join(unknown)} not in the collection "
                             f"(it has {', '.join(vector_sizes)})", path=collection)
    out: list[dict[str, list[float]]] = [{} for _ in points]
    for name, size in vector_sizes.items():
        rows = [i for i, point in enumerate(points) if name in point.vectors]
        if not rows:
            continue
        try:
            matrix = np.asarray([points[i].vectors[name] for i in rows], dtype=np.float32)
        except ValueError:  # ragged: find the culprit below
            matrix = None
        bad = (np.ones(len(rows), dtype=bool) if matrix is None or matrix.shape != (len(rows), size)
               else ~(np.isfinite(matrix).all(axis=1) & matrix.any(axis=1)))
        for k in np.flatnonzero(bad):  # raises for the first bad vector, with its point and reason
            _checked(collection, size, name, points[rows[k]].vectors[name], f"point {points[rows[k]].id}")
        for i, values in zip(rows, matrix.tolist()):
            out[i][name] = values
    return out


def _checked(collection: str, size: int, name: str, vector: Any, what: str) -> list[float]:
    arr = np.asarray(vector, dtype=np.float32)
    if arr.shape != (size,):
        raise StoreError(f"{what}: vector {name!r} has shape {arr.shape}, the collection stores {size}-d vectors "
                         "(was it indexed with a different model checkpoint?)", path=collection)
    if not np.isfinite(arr).all() or not arr.any():
        raise StoreError(f"{what}: vector {name!r} is zero or not finite", path=collection)
    return arr.tolist()


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise StoreError(f"batch size must be >= 1, got {size}")
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def plain_payload(collection: str, pid: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as plain JSON values (numpy scalars/arrays and tuples converted; NaN refused)."""

    def plain(value: Any, where: str) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:  # the common case, first
            return value
        if kind is float or isinstance(value, np.floating):
            if not math.isfinite(value):
                raise StoreError(f"point {pid}: payload {where} is {value} (not valid JSON)", path=collection)
            return float(value)
        if isinstance(value, Mapping):
            return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [plain(v, where) for v in value]
        if isinstance(value, np.generic):
            return plain(value.item(), where)
        if isinstance(value, str):  # subclasses (e.g. str enums) as plain values
            return str(value)
        if isinstance(value, int):
            return int(value)
        raise StoreError(f"point {pid}: payload {where} has type {kind.__name__} (not JSON)", path=collection)

    return {str(k): plain(v, str(k)) for k, v in payload.items()}


def record_point(record: Any, with_vectors: bool) -> Point:
    """A backend record (``.id``, ``.vector`` dict, ``.payload``) as a :class:`Point`."""
    vectors = {n: np.asarray(v, dtype=np.float32) for n, v in (record.vector or {}).items()} if with_vectors else {}
    return Point(id=str(record.id), vectors=vectors, payload=dict(record.payload or {}))


def scored_hit(scored: Any, with_vectors: bool) -> Hit:
    """A backend scored point as a :class:`Hit`."""
    vectors = {n: np.asarray(v, dtype=np.float32) for n, v in (scored.vector or {}).items()} if with_vectors else None
    return Hit(id=str(scored.id), score=float(scored.score), payload=dict(scored.payload or {}), vectors=vectors)
