"""Checks and conversions shared by both backends: validate points and query vectors before they
reach Qdrant, make payloads plain JSON, turn backend records into :class:`Point` / :class:`Hit`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.store.base import FUSIONS, Hit, Point, SparseVector, StoredVector
from cxrsearch.store.schema import CollectionSchema

if TYPE_CHECKING:
    import numpy as np


def prefetch_limit(limit: int) -> int:
    """How many candidates each RRF input list holds: enough for ranks to matter beyond ``limit``."""
    return max(4 * limit, 50)


def check_fusion(
    collection: str, queries: Sequence[Any], weights: Sequence[float] | None, fusion: str = "rrf"
) -> list[float] | None:
    """Check a fused query's inputs, fusion (:data:`~cxrsearch.store.base.FUSIONS`) and weights (one
    finite weight >= 0 per input, not all 0; required for ``"linear"``)."""
    if not queries:
        raise StoreError("search_fused needs at least one (vector name, vector) query", path=collection)
    if fusion not in FUSIONS:
        raise QueryError(f"unknown fusion {fusion!r} (fusions: {', '.join(FUSIONS)})")
    if weights is None:
        if fusion == "linear":
            raise QueryError("a linear fusion needs one weight per input: scores of different sizes are summed")
        return None
    out = [float(w) for w in weights]
    if len(out) != len(queries) or not all(math.isfinite(w) and w >= 0 for w in out) or not any(out):
        raise QueryError(f"fusion weights must be one number >= 0 per input ({len(queries)}), not all 0: got {out}")
    return out


def score_variable(index: int) -> str:
    """The formula variable of prefetch ``index``'s score (Qdrant's ``$score[i]``)."""
    return f"$score[{index}]"


def check_limit(limit: int, what: str = "limit") -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise QueryError(f"{what} must be a positive integer, got {limit!r}")


def check_vector_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise StoreError(f"vector size must be a positive integer, got {size!r}")


def check_same_collection(
    collection: str,
    where: str,
    have_schema: CollectionSchema,
    have_sizes: Mapping[str, int],
    schema: CollectionSchema,
    sizes: Mapping[str, int],
) -> None:
    """``create_collection`` on an existing collection: a no-op for the same vector names and sizes.

    The existing collection keeps its own schema (e.g. ``cases-hnsw`` created beforehand on a server).
    """
    have_names = set(have_schema.vector_names) | set(have_schema.sparse_names)
    names = set(schema.vector_names) | set(schema.sparse_names)
    if have_names != names:
        raise StoreError(
            f"collection {collection!r} exists with vectors {', '.join(sorted(have_names))}, "
            f"not {', '.join(sorted(names))} (made by an older cxrsearch? index into a new "
            "collection, or drop this one and index again)",
            path=where,
        )
    for name, size in sizes.items():
        if have_sizes.get(name) != size:
            raise StoreError(
                f"collection {collection!r} exists with {have_sizes.get(name)}-d {name!r} vectors, not "
                f"{size}-d (built with another model checkpoint? use another collection name, or drop it)",
                path=where,
            )


def as_query_vector(
    collection: str,
    vector_sizes: Mapping[str, int],
    name: str,
    vector: Any,
    sparse_names: Sequence[str] = (),
    stored: Callable[[str, str], Any] | None = None,
) -> list[float] | SparseVector:
    """Check a query vector (known name, right size, finite, non-zero) and return it as a list
    (a dense vector) or as the :class:`SparseVector` it is (a sparse one). A :class:`StoredVector`
    is first read with the backend's ``stored(point_id, name)`` (see :func:`stored_vector`)."""
    if isinstance(vector, StoredVector):
        if stored is None:  # pragma: no cover - every backend passes its reader
            raise StoreError("this backend cannot search by a stored vector", path=collection)
        if name in sparse_names:
            raise QueryError(f"a query by a stored vector searches a dense vector, not the sparse {name!r}")
        vector = stored(vector.point_id, name)
    if name in sparse_names:
        return checked_sparse(collection, name, vector, "query")
    if name not in vector_sizes:
        known = ", ".join([*vector_sizes, *sparse_names])
        raise QueryError(
            f"collection {collection!r} has no vector {name!r} (it has {known}; made by an older "
            "cxrsearch? drop it and index again, see docs/search.md)"
        )
    return _checked(collection, vector_sizes[name], name, vector, "query")


def stored_vector(collection: str, records: Sequence[Any], point_id: str, name: str) -> Any:
    """The ``name`` vector of the record a backend's retrieve returned for ``point_id``, as the
    backend gives it (a float list, or an object with ``indices``/``values``)."""
    if not records:
        raise QueryError(f"no point {point_id} in collection {collection!r}")
    vectors = records[0].vector or {}
    if name not in vectors:
        raise QueryError(f"point {point_id} has no {name!r} vector to search with", path=collection)
    return vectors[name]


def checked_sparse(collection: str, name: str, vector: Any, what: str) -> SparseVector:
    """A valid :class:`SparseVector` (unique non-negative ids, finite weights, not empty)."""
    import numpy as np

    if not isinstance(vector, SparseVector):
        raise StoreError(
            f"{what}: vector {name!r} is sparse; give a SparseVector, not {type(vector).__name__}", path=collection
        )
    indices = np.asarray(vector.indices)
    values = np.asarray(vector.values, dtype=np.float64)
    if (
        len(indices) == 0
        or len(indices) != len(values)
        or len(set(vector.indices)) != len(indices)
        or (indices < 0).any()
        or not np.isfinite(values).all()
    ):
        raise StoreError(
            f"{what}: sparse vector {name!r} is empty, has repeated or negative ids, or weights that are not finite",
            path=collection,
        )
    return vector


def points_vectors(
    collection: str, vector_sizes: Mapping[str, int], points: Sequence[Point], sparse_names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Check a batch of points for upsert (UUID ids, known vector names, right sizes, finite
    non-zero values) and return their vectors as lists (sparse ones as they are), one dict per point.

    Vectors are checked per name as one ``[B, D]`` matrix: validating and converting 3 x 512 floats
    per point one array at a time costs more than the upsert itself.
    """
    import numpy as np

    for point in points:
        try:
            uuid.UUID(str(point.id))
        except ValueError:
            raise StoreError(
                f"point id {point.id!r} is not a UUID (use cxrsearch.store.point_id)", path=collection
            ) from None
        if not point.vectors:
            raise StoreError(f"point {point.id} has no vectors", path=collection)
        unknown = sorted(set(point.vectors) - set(vector_sizes) - set(sparse_names))
        if unknown:
            raise StoreError(
                f"point {point.id} has vector(s) {', '.join(unknown)} not in the collection "
                f"(it has {', '.join([*vector_sizes, *sparse_names])})",
                path=collection,
            )
    out: list[dict[str, Any]] = [{} for _ in points]
    for name in sparse_names:
        for i, point in enumerate(points):
            if name in point.vectors:
                out[i][name] = checked_sparse(collection, name, point.vectors[name], f"point {point.id}")
    for name, size in vector_sizes.items():
        rows = [i for i, point in enumerate(points) if name in point.vectors]
        if not rows:
            continue
        try:
            matrix = np.asarray([points[i].vectors[name] for i in rows], dtype=np.float32)
        except ValueError:  # ragged: find the culprit below
            matrix = None
        bad = (
            np.ones(len(rows), dtype=bool)
            if matrix is None or matrix.shape != (len(rows), size)
            else ~(np.isfinite(matrix).all(axis=1) & matrix.any(axis=1))
        )
        for k in np.flatnonzero(bad):  # raises for the first bad vector, with its point and reason
            _checked(collection, size, name, points[rows[k]].vectors[name], f"point {points[rows[k]].id}")
        assert matrix is not None  # a ragged matrix marks every row bad: the loop above raised
        for i, values in zip(rows, matrix.tolist()):
            out[i][name] = values
    return out


def _checked(collection: str, size: int, name: str, vector: Any, what: str) -> list[float]:
    """``vector`` (an array or a sequence of numbers) as a list of ``size`` finite floats, not all zero.

    Plain Python, no numpy: a ``--like`` query checks a stored vector without importing it."""
    shape = getattr(vector, "shape", None)
    try:
        values = [float(v) for v in (vector.tolist() if hasattr(vector, "tolist") else vector)]
    except (TypeError, ValueError):  # nested, ragged, or not numbers
        values = None
    if values is None or len(values) != size or (shape is not None and len(shape) != 1):
        given = tuple(shape) if shape is not None else (len(vector),) if hasattr(vector, "__len__") else "?"
        raise StoreError(
            f"{what}: vector {name!r} has shape {given}, the collection stores {size}-d vectors "
            "(was it indexed with a different model checkpoint?)",
            path=collection,
        )
    if not all(map(math.isfinite, values)) or not any(values):
        raise StoreError(f"{what}: vector {name!r} is zero or not finite", path=collection)
    return values


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
    import numpy as np

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


def _vector(value: Any) -> np.ndarray | SparseVector:
    """A backend's stored vector (a float list, or an object with ``indices``/``values``)."""
    import numpy as np

    if hasattr(value, "indices"):
        return SparseVector(tuple(int(i) for i in value.indices), tuple(float(v) for v in value.values))
    return np.asarray(value, dtype=np.float32)


def record_point(record: Any, with_vectors: bool) -> Point:
    """A backend record (``.id``, ``.vector`` dict, ``.payload``) as a :class:`Point`."""
    vectors = {n: _vector(v) for n, v in (record.vector or {}).items()} if with_vectors else {}
    return Point(id=str(record.id), vectors=vectors, payload=dict(record.payload or {}))


def scored_hit(scored: Any, with_vectors: bool) -> Hit:
    """A backend scored point as a :class:`Hit`."""
    vectors = {n: _vector(v) for n, v in (scored.vector or {}).items()} if with_vectors else None
    return Hit(id=str(scored.id), score=float(scored.score), payload=dict(scored.payload or {}), vectors=vectors)


def check_diversity(diversity: float) -> float:
    """``diversity`` of :meth:`Store.search_diverse` as a float in [0, 1] (0 = plain relevance order)."""
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0.0 <= float(diversity) <= 1.0:
        raise QueryError(f"diversity must be a number from 0 (plain relevance) to 1 (most diverse), got {diversity!r}")
    return float(diversity)


def check_dense_for_mmr(collection: str, schema: CollectionSchema, vector_name: str) -> None:
    """MMR compares candidates with each other by a dense vector: refuse a sparse one in one line."""
    if vector_name in schema.sparse_names:
        raise QueryError(
            f"diverse search compares dense vectors; {vector_name!r} of collection {collection!r} "
            "is sparse (use image, text or joint)"
        )


def mmr_candidates(limit: int, candidates: int | None) -> int:
    """How many nearest neighbours MMR re-ranks: ``candidates`` (at least ``limit``), by default
    :func:`prefetch_limit` (with ``candidates == limit`` MMR could only reorder, never replace)."""
    if candidates is None:
        return prefetch_limit(limit)
    check_limit(candidates, "candidates")
    return max(candidates, limit)


def check_facet_key(collection: str, schema: CollectionSchema, key: str, where: str) -> None:
    """Facets count values through a payload index: refuse, in one line, a field without a keyword one."""
    if not isinstance(key, str) or not key:
        raise QueryError(f"a facet needs a payload field name, got {key!r}")
    if schema.payload_indexes.get(key) != "keyword":
        indexed = ", ".join(f for f, kind in schema.payload_indexes.items() if kind == "keyword") or "none"
        raise StoreError(
            f"cannot count values of payload field {key!r}: it has no keyword payload index in "
            f"collection {collection!r} (keyword-indexed fields: {indexed})",
            path=where,
        )


def facet_counts(hits: Iterable[tuple[Any, int]], limit: int) -> list[tuple[str, int]]:
    """``(value, count)`` pairs as :meth:`Store.facet` returns them: most frequent first, ties by value."""
    pairs = [(str(value), int(count)) for value, count in hits if int(count) > 0]
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))[:limit]
