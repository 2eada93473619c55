"""What the rest of cxrsearch speaks to a store: :class:`Point`, :class:`Filter`, :class:`Hit`,
:class:`CollectionInfo`, the :class:`Store` protocol and deterministic :func:`point_id`.

Vectors are numpy arrays here; backends convert at their edge. Every method of a store takes the
collection name first, because one store (a directory, or a server) holds several collections.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.store.schema import CollectionSchema

if TYPE_CHECKING:  # numpy is imported by what makes vectors, not by opening a store
    import numpy as np

POINT_NAMESPACE = uuid.UUID("5f1c7a52-4e0b-5b8e-9a3e-2c6d0f4b8a11")
"""UUIDv5 namespace of cxrsearch point ids (a fixed constant: changing it would re-key every store)."""

RRF_K = 1
"""Reciprocal-rank-fusion constant. Qdrant's weighted RRF (qdrant-edge and qdrant-client agree) adds
``1 / ((rank0 + 1) / w + k - 1)`` per list, for a hit at 0-based position ``rank0`` of a list of
weight ``w``. At ``k = 1`` that is ``w / (rank0 + 1)``: a weight multiplies its list's
reciprocal ranks, so a heavier list counts more. At Cormack et al.'s ``k = 60`` a weight above 1
instead flattens its list (every position scores about ``1/59``-``1/65``), so its order hardly counts
and weights acted backwards. On val (hybrid text queries, ``benchmarks/bench_retrieval.py``'s
objective) the best weighting scored 0.876 at ``k = 1``, 0.874 at 5, 0.852 at 20 and 0.850 at 60."""

FUSIONS = ("rrf", "linear")
"""How :meth:`Store.search_fused` combines its lists inside the engine. ``"rrf"``: weighted reciprocal
rank fusion (:data:`RRF_K`). ``"linear"``: a Qdrant formula over the prefetches, the fused score is
``sum_i w_i * score_i`` with ``score_i`` the point's score in list ``i`` (0 where the point is not in
that list): scores keep their size, so a near tie in one list stays a near tie and another list
decides it (RRF turns the same near tie into ranks 1, 2, 3 ... of full weight)."""


def point_id(collection: str, key: str) -> str:
    """Deterministic point id: UUIDv5 of ``"<collection>/<key>"`` (key = image id or study id)."""
    if not collection or not key:
        raise StoreError("point ids need a non-empty collection name and key")
    return str(uuid.uuid5(POINT_NAMESPACE, f"{collection}/{key}"))


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector (e.g. BM25 term weights): token ids and their weights, same length, ids unique."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


Vector: TypeAlias = "np.ndarray | SparseVector"
"""A dense float32 array ``(D,)`` or a :class:`SparseVector` (for the schema's sparse vectors)."""


@dataclass(frozen=True)
class StoredVector:
    """A query by the vector a stored point holds under the searched name (``--like``): the backend
    reads it where it keeps it, so the caller never fetches (or converts) it. QueryError when the
    point, or its vector of that name, is not in the collection."""

    point_id: str


QueryVector: TypeAlias = "np.ndarray | SparseVector | StoredVector"
"""What a search takes: a :data:`Vector`, or a :class:`StoredVector`."""


@dataclass(frozen=True)
class Point:
    """One stored case. ``vectors`` maps vector name -> float32 array ``(D,)`` (or a
    :class:`SparseVector` for a sparse vector); any subset of the schema's vectors (a report without
    a radiograph has no ``image`` vector, a radiograph without a report no ``bm25``). ``payload`` is JSON."""

    id: str
    vectors: Mapping[str, Vector]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search result. ``score`` is cosine similarity for :meth:`Store.search` (the IDF-weighted BM25
    sum for a sparse vector) and the weighted RRF score for :meth:`Store.search_fused`. ``vectors``
    (name -> ``(D,)``) only when asked for."""

    id: str
    score: float
    payload: Mapping[str, Any]
    vectors: Mapping[str, Vector] | None = None
    components: Mapping[str, Mapping[str, Any]] | None = None
    """For a fused query when asked for: component name -> its own ``rank``, ``score`` and ``weight``."""


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection is: its point count, per-vector sizes and the schema it was created from."""

    name: str
    points_count: int
    vector_sizes: dict[str, int]
    schema: CollectionSchema
    location: str


@dataclass(frozen=True)
class IntegrityRecord:
    """What a writer left at its clean close (see :mod:`cxrsearch.store.integrity`): ``points``,
    ``vectors`` (name -> points holding it), ``ids_digest`` (sha256 of the sorted point ids) and
    ``written`` (UTC, ISO 8601)."""

    points: int
    vectors: dict[str, int]
    ids_digest: str
    written: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "vectors": dict(self.vectors),
            "ids_digest": self.ids_digest,
            "written": self.written,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> IntegrityRecord:
        try:
            return cls(
                points=int(raw["points"]),
                vectors={str(k): int(v) for k, v in raw["vectors"].items()},
                ids_digest=str(raw["ids_digest"]),
                written=str(raw["written"]),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"the integrity record is unreadable ({exc!r}); drop and rebuild the collection", path=where
            ) from None


@dataclass(frozen=True)
class Clause:
    """One backend-neutral condition on a payload field holding a string or a list of strings.

    ``mode``: ``"all"`` (every value present), ``"any"`` (at least one), ``"none"`` (none present).
    """

    key: str
    values: tuple[str, ...]
    mode: str


@dataclass(frozen=True)
class Filter:
    """Which points a query may return. Empty fields constrain nothing; all given fields must hold.

    ``all_labels``: every label present; ``any_labels``: at least one; ``not_labels``: none.
    ``truth``: test labels against ``labels_true`` (MeSH-derived) instead of predicted ``labels``.
    ``view``/``split``: exact payload value. ``study_ids`` keeps only, ``exclude_study_ids`` drops.
    """

    all_labels: tuple[str, ...] = ()
    any_labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()
    view: str | None = None
    split: str | None = None
    truth: bool = False
    exclude_study_ids: tuple[str, ...] = ()
    study_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("all_labels", "any_labels", "not_labels", "exclude_study_ids", "study_ids"):
            values = getattr(self, name)
            if isinstance(values, str):
                raise QueryError(f"filter {name} must be a list of strings, not the string {values!r}")
            values = tuple(values)
            if any(not isinstance(v, str) or v == "" for v in values):
                raise QueryError(f"filter {name} must hold non-empty strings, got {list(values)!r}")
            object.__setattr__(self, name, values)
        clash = sorted(set(self.all_labels) & set(self.not_labels))
        if clash:
            raise QueryError(f"label(s) {', '.join(clash)} both required and excluded: nothing could match")

    @property
    def label_field(self) -> str:
        return "labels_true" if self.truth else "labels"

    def clauses(self) -> tuple[Clause, ...]:
        """The filter as conditions: the one place its meaning is written down."""
        out: list[Clause] = []
        if self.all_labels:
            out.append(Clause(self.label_field, self.all_labels, "all"))
        if self.any_labels:
            out.append(Clause(self.label_field, self.any_labels, "any"))
        if self.not_labels:
            out.append(Clause(self.label_field, self.not_labels, "none"))
        if self.view is not None:
            out.append(Clause("view", (self.view,), "any"))
        if self.split is not None:
            out.append(Clause("split", (self.split,), "any"))
        if self.study_ids:
            out.append(Clause("study_id", self.study_ids, "any"))
        if self.exclude_study_ids:
            out.append(Clause("study_id", self.exclude_study_ids, "none"))
        return tuple(out)

    def is_empty(self) -> bool:
        return not self.clauses()

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Evaluate the filter on one payload in Python (same semantics as the backends)."""
        for clause in self.clauses():
            raw = payload.get(clause.key)
            have = set(raw) if isinstance(raw, (list, tuple)) else ({raw} if raw is not None else set())
            wanted = set(clause.values)
            if clause.mode == "all" and not wanted <= have:
                return False
            if clause.mode == "any" and not wanted & have:
                return False
            if clause.mode == "none" and wanted & have:
                return False
        return True


@runtime_checkable
class Store(Protocol):
    """The storage interface; :class:`~cxrsearch.store.edge.EdgeStore` and
    :class:`~cxrsearch.store.client.ClientStore` implement it with identical semantics."""

    location: str
    """Where the store lives (a directory, a URL or ``:memory:``), for messages."""

    def list_collections(self) -> list[str]: ...

    def collection_info(self, collection: str, check: bool = True) -> CollectionInfo:
        """The collection's facts; the first open compares its counts with its integrity record and
        raises StoreError on a mismatch, unless ``check`` is False (``collections verify``, ``drop``)."""
        ...

    def integrity_record(self, collection: str) -> IntegrityRecord | None:
        """What the last clean close of a writer recorded (:mod:`cxrsearch.store.integrity`), if any."""
        ...

    def vector_counts(self, collection: str) -> dict[str, int]:
        """Exact number of points holding each named vector, dense and sparse."""
        ...

    def roots(self, collection: str) -> dict[str, str]:
        """Local folders the collection's relative payload paths refer to (``"reports"``, ``"images"``,
        ``"checkpoint"``: absolute paths on this machine). Kept beside an embedded collection, never
        sent to a server (a server collection has none: pass ``--images`` / ``--model``)."""
        ...

    def set_roots(self, collection: str, roots: Mapping[str, str]) -> None:
        """Record (merge) :meth:`roots` for ``collection``."""
        ...

    def create_collection(
        self, collection: str, schema: CollectionSchema, vector_size: int, label_size: int | None = None
    ) -> bool:
        """Create it (``vector_size``-d embeddings, ``label_size`` labels for ``"size": "labels"``
        vectors); ``False`` (no-op) when it exists with the same vectors and sizes, else StoreError."""
        ...

    def drop_collection(self, collection: str) -> None: ...

    def upsert(self, collection: str, points: Iterable[Point], batch: int = 256) -> int:
        """Insert or replace points (same id -> replaced, never duplicated); returns how many."""
        ...

    def count(self, collection: str, filter: Filter | None = None) -> int: ...

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]: ...

    def retrieve(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        """The points that exist among ``ids``, in the order asked."""
        ...

    def search(
        self,
        collection: str,
        vector_name: str,
        vector: QueryVector,
        filter: Filter | None = None,
        limit: int = 10,
        with_vectors: bool = False,
    ) -> list[Hit]: ...

    def search_fused(
        self,
        collection: str,
        queries: Sequence[tuple[str, QueryVector]],
        filter: Filter | None = None,
        limit: int = 10,
        weights: Sequence[float] | None = None,
        fusion: str = "rrf",
    ) -> list[Hit]:
        """One filtered nearest-neighbour list per (vector name, query), fused inside the engine by
        ``fusion`` (:data:`FUSIONS`): weighted RRF (k = :data:`RRF_K`; ``weights`` one per list,
        ``None`` = unweighted) or ``"linear"``, the weighted sum of the lists' scores (``weights``
        required: they multiply scores of different sizes)."""
        ...

    def scroll(
        self, collection: str, filter: Filter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[Point]: ...

    def close(self) -> None: ...

    def facet(self, collection: str, key: str, filter: Filter | None = None, limit: int = 50) -> list[tuple[str, int]]:
        """Exact ``(value, count)`` of each value of keyword payload field ``key`` among the points
        passing ``filter`` (a point counts once per distinct value), most frequent first, ties by
        value, at most ``limit``. StoreError naming the field when it has no keyword payload index."""
        ...

    def search_diverse(
        self,
        collection: str,
        vector_name: str,
        vector: np.ndarray | StoredVector,
        filter: Filter | None = None,
        limit: int = 10,
        diversity: float = 0.5,
        candidates: int | None = None,
    ) -> list[Hit]:
        """Maximal marginal relevance (Qdrant's MMR) over the ``candidates`` (default
        ``max(4 * limit, 50)``, at least ``limit``) filtered nearest neighbours: each next hit maximises
        ``(1 - diversity) * sim(query) - diversity * max sim(hits already chosen)``. ``diversity`` 0
        is plain :meth:`search` order, 1 only avoids resemblance. ``score`` is the cosine to the query."""
        ...
