"""The server store: qdrant-client against a Qdrant server (``url`` + optional API key), or
``QdrantClient(":memory:")``, the client's in-process implementation of the same API, which the
congruence tests use to check this code path without a server.

Server errors become one-line :class:`StoreError` s: an unreachable server names its URL, a rejected
API key says so, a missing collection names it. The collection's schema and vector size are kept in
the collection's own ``metadata`` (Qdrant >= 1.16), so ``collection_info`` can report them; so is its
integrity record (:mod:`cxrsearch.store.integrity`): cleared by the first write of a session, written
again by :meth:`ClientStore.close`, compared with the server's counts when a collection is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np

from cxrsearch.errors import StoreError
from cxrsearch.store import client_config
from cxrsearch.store.base import (
    RRF_K,
    CollectionInfo,
    Filter,
    Hit,
    IntegrityRecord,
    Point,
    QueryVector,
    SparseVector,
    StoredVector,
)
from cxrsearch.store.checks import (
    as_query_vector,
    batched,
    check_dense_for_mmr,
    check_diversity,
    check_facet_key,
    check_fusion,
    check_limit,
    check_same_collection,
    check_vector_size,
    facet_counts,
    mmr_candidates,
    plain_payload,
    points_vectors,
    prefetch_limit,
    record_point,
    score_variable,
    scored_hit,
    stored_vector,
)
from cxrsearch.store.filters import to_client
from cxrsearch.store.integrity import check_counts, make_record
from cxrsearch.store.schema import CollectionSchema, check_collection_name

MIN_SERVER = (1, 18)
"""Oldest Qdrant server with what this module uses (weighted RRF with ``k``: 1.18; collection metadata;
formula queries, the linear fusion: 1.14)."""


class ClientStore:
    """:class:`~cxrsearch.store.base.Store` over qdrant-client. Use :meth:`connect` or :meth:`in_memory`."""

    def __init__(self, client: Any, location: str, *, local: bool) -> None:
        self._client = client
        self.location = location
        self._local = local
        self._sizes: dict[str, tuple[CollectionSchema, dict[str, int]]] = {}
        self._checked: set[str] = set()
        self._written: set[str] = set()
        self._roots: dict[str, dict[str, str]] = {}
        self.timeout: int | None = None
        """Seconds a server call may take (``None``: in-memory, no network)."""

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout: int = 10) -> ClientStore:
        """Connect to a server and check it answers, accepts the key and is recent enough."""
        import warnings
        from urllib.parse import urlsplit

        from qdrant_client import QdrantClient

        try:
            with warnings.catch_warnings():
                if urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1"):  # plain http is fine on loopback
                    warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
                client = QdrantClient(url=url, api_key=api_key or None, timeout=timeout, check_compatibility=False)
        except Exception as exc:  # bad URL syntax and the like
            raise StoreError(f"cannot use this Qdrant URL: {exc}", path=url) from exc
        store = cls(client, url, local=False)
        store.timeout = timeout
        with store._errors(None):
            version = client.info().version
        parsed = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
        if parsed < MIN_SERVER:
            raise StoreError(
                f"Qdrant server {version} is too old: cxrsearch needs >= "
                f"{'.'.join(map(str, MIN_SERVER))} (see docker/docker-compose.yml)",
                path=url,
            )
        return store

    @classmethod
    def in_memory(cls) -> ClientStore:
        from qdrant_client import QdrantClient

        return cls(QdrantClient(location=":memory:"), ":memory:", local=True)

    # -- collections -------------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        with self._errors(None):
            return sorted(c.name for c in self._client.get_collections().collections)

    def collection_info(self, collection: str, check: bool = True) -> CollectionInfo:
        """``check=False`` reports a collection whose counts disagree with its integrity record."""
        with self._errors(collection):
            info = self._client.get_collection(collection)
        schema, sizes = self._layout(collection, info, check=check)
        return CollectionInfo(
            name=collection,
            points_count=int(info.points_count or 0),
            vector_sizes=sizes,
            schema=schema,
            location=f"{self.location} collection {collection}",
        )

    def create_collection(
        self, collection: str, schema: CollectionSchema, vector_size: int, label_size: int | None = None
    ) -> bool:
        check_collection_name(collection)
        check_vector_size(vector_size)
        sizes = schema.vector_sizes(vector_size, label_size)
        with self._errors(None):
            exists = self._client.collection_exists(collection)
        if exists:
            info = self.collection_info(collection)
            check_same_collection(collection, self.location, info.schema, info.vector_sizes, schema, sizes)
            return False
        config = client_config.collection_config(schema, sizes)
        indexes = client_config.payload_index_types(schema)
        metadata = {"cxrsearch": {"schema": schema.to_dict(), "vector_size": vector_size, "vector_sizes": sizes}}
        with self._errors(None):
            self._client.create_collection(collection, **config, metadata=metadata)
            if not self._local:  # the in-memory client has no payload indexes (it warns and ignores them)
                for field, kind in indexes.items():
                    self._client.create_payload_index(collection, field, field_schema=kind, wait=True)
        return True

    def drop_collection(self, collection: str) -> None:
        with self._errors(collection):
            if not self._client.collection_exists(collection):
                raise StoreError(f"no collection {collection!r} on this server", path=self.location)
            self._client.delete_collection(collection)
        self._sizes.pop(collection, None)
        self._checked.discard(collection)
        self._written.discard(collection)

    # -- points ------------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Iterable[Point], batch: int = 256) -> int:
        from qdrant_client import models

        schema, sizes = self._layout(collection)
        if collection not in self._written:  # a writer that dies from here on leaves no record, never a stale one
            self._set_record(collection, None)
            self._written.add(collection)
        total = 0
        for chunk in batched(points, batch):
            structs = [
                models.PointStruct(
                    id=p.id, vector=_client_vectors(vectors), payload=plain_payload(collection, p.id, p.payload)
                )
                for p, vectors in zip(chunk, points_vectors(collection, sizes, chunk, schema.sparse_names))
            ]
            with self._errors(collection):
                self._client.upsert(collection, points=structs, wait=True)
            total += len(structs)
        return total

    def count(self, collection: str, filter: Filter | None = None) -> int:
        with self._errors(collection):
            return int(self._client.count(collection, count_filter=to_client(filter), exact=True).count)

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in batched(ids, 1024):
            with self._errors(collection):
                records = self._client.retrieve(collection, list(chunk), with_payload=False, with_vectors=False)
            found.update(str(r.id) for r in records)
        return found

    def retrieve(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        by_id: dict[str, Point] = {}
        for chunk in batched(ids, 1024):
            with self._errors(collection):
                records = self._client.retrieve(collection, list(chunk), with_payload=True, with_vectors=with_vectors)
            by_id.update((str(r.id), record_point(r, with_vectors)) for r in records)
        return [by_id[i] for i in ids if i in by_id]

    def search(
        self,
        collection: str,
        vector_name: str,
        vector: QueryVector,
        filter: Filter | None = None,
        limit: int = 10,
        with_vectors: bool = False,
    ) -> list[Hit]:
        check_limit(limit)
        schema, sizes = self._layout(collection)
        query = _client_vector(
            as_query_vector(collection, sizes, vector_name, vector, schema.sparse_names, self._stored(collection))
        )
        return self._nearest(collection, schema, query, vector_name, filter, limit, with_vectors)

    def _nearest(
        self,
        collection: str,
        schema: CollectionSchema,
        query: Any,
        vector_name: str,
        filter: Filter | None,
        limit: int,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """One query on ``vector_name`` (a vector, or MMR over its nearest), as hits."""
        with self._errors(collection):
            response = self._client.query_points(
                collection,
                query=query,
                using=vector_name,
                query_filter=to_client(filter),
                limit=limit,
                search_params=self._search_params(schema),
                with_payload=True,
                with_vectors=with_vectors,
            )
        return [scored_hit(p, with_vectors) for p in response.points]

    def search_fused(
        self,
        collection: str,
        queries: Sequence[tuple[str, QueryVector]],
        filter: Filter | None = None,
        limit: int = 10,
        weights: Sequence[float] | None = None,
        fusion: str = "rrf",
    ) -> list[Hit]:
        from qdrant_client import models

        check_limit(limit)
        weights = check_fusion(collection, queries, weights, fusion)
        schema, sizes = self._layout(collection)
        client_filter = to_client(filter)
        params = self._search_params(schema)
        sparse = schema.sparse_names
        stored = self._stored(collection)
        # the filter is given once, on the fusion: the engine applies it inside every prefetch
        prefetch = [
            models.Prefetch(
                query=_client_vector(as_query_vector(collection, sizes, name, vec, sparse, stored)),
                using=name,
                limit=prefetch_limit(limit),
                params=None if name in sparse else params,
            )
            for name, vec in queries
        ]
        with self._errors(collection):
            response = self._client.query_points(
                collection,
                prefetch=prefetch,
                query=_client_fusion(fusion, weights),
                query_filter=client_filter,
                limit=limit,
                with_payload=True,
            )
        return [scored_hit(p, False) for p in response.points]

    def scroll(
        self, collection: str, filter: Filter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[Point]:
        check_limit(batch, "batch")
        offset = None
        while True:
            with self._errors(collection):
                records, offset = self._client.scroll(
                    collection,
                    scroll_filter=to_client(filter),
                    limit=batch,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            yield from (record_point(r, with_vectors) for r in records)
            if offset is None:
                return

    def close(self) -> None:
        """Write the integrity record of each collection written to, then close the client."""
        try:
            for collection in sorted(self._written):
                self._write_record(collection)
        finally:
            self._written.clear()
            with self._errors(None):
                self._client.close()

    # -- local roots: for this session only (a server never receives this machine's paths) -----------
    def roots(self, collection: str) -> dict[str, str]:
        return dict(self._roots.get(collection, {}))

    def set_roots(self, collection: str, roots: Mapping[str, str]) -> None:
        self._roots.setdefault(collection, {}).update({k: str(v) for k, v in roots.items()})

    # -- integrity ---------------------------------------------------------------------------------
    def integrity_record(self, collection: str) -> IntegrityRecord | None:
        record = self._metadata(collection).get("integrity")
        where = f"{self.location} collection {collection}"
        return None if record is None else IntegrityRecord.from_dict(record, where)

    def vector_counts(self, collection: str) -> dict[str, int]:
        """Exact number of points holding each named vector (dense and sparse)."""
        from qdrant_client import models

        schema, _ = self._layout(collection, check=False)
        counts = {}
        for name in (*schema.vectors, *schema.sparse_names):
            with self._errors(collection):
                counts[name] = int(
                    self._client.count(
                        collection,
                        exact=True,
                        count_filter=models.Filter(must=[models.HasVectorCondition(has_vector=name)]),
                    ).count
                )
        return counts

    def _metadata(self, collection: str) -> dict[str, Any]:
        with self._errors(collection):
            info = self._client.get_collection(collection)
        meta = (info.config.metadata or {}).get("cxrsearch")
        return meta if isinstance(meta, dict) else {}

    def _set_record(self, collection: str, record: IntegrityRecord | None) -> None:
        meta = dict(self._metadata(collection))
        meta["integrity"] = None if record is None else record.to_dict()
        with self._errors(collection):
            self._client.update_collection(collection, metadata={"cxrsearch": meta})

    def _write_record(self, collection: str) -> None:
        ids: list[str] = []
        offset = None
        while True:
            with self._errors(collection):
                records, offset = self._client.scroll(
                    collection, limit=4096, offset=offset, with_payload=False, with_vectors=False
                )
            ids.extend(str(r.id) for r in records)
            if offset is None:
                break
        with self._errors(collection):
            points = int(self._client.count(collection, exact=True).count)
        self._set_record(collection, make_record(points, self.vector_counts(collection), ids))

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _stored(self, collection: str) -> Callable[[str, str], Any]:
        """Reads the stored vector a :class:`StoredVector` query names (as the server returns it)."""

        def read(point_id: str, name: str) -> Any:
            with self._errors(collection):
                records = self._client.retrieve(collection, [point_id], with_payload=False, with_vectors=[name])
            return stored_vector(collection, records, point_id, name)

        return read

    def _layout(self, collection: str, info: Any = None, check: bool = True) -> tuple[CollectionSchema, dict[str, int]]:
        """Schema and per-vector sizes of a collection (cached: they never change). The first use with
        ``check`` compares the server's counts with the integrity record."""
        if collection in self._sizes and info is None and (not check or collection in self._checked):
            return self._sizes[collection]
        if info is None:
            with self._errors(collection):
                info = self._client.get_collection(collection)
        meta = (info.config.metadata or {}).get("cxrsearch")
        if not isinstance(meta, dict) or "schema" not in meta:
            raise StoreError(
                f"collection {collection!r} was not created by cxrsearch (no schema in its metadata)",
                path=self.location,
            )
        schema = CollectionSchema.from_dict(meta["schema"], source=f"{self.location} collection {collection}")
        vectors = info.config.params.vectors
        sizes = {name: int(vectors[name].size) for name in schema.vectors if name in vectors}
        self._sizes[collection] = (schema, sizes)
        if check and collection not in self._checked and collection not in self._written:
            record = meta.get("integrity")
            if record is not None:
                where = f"{self.location} collection {collection}"
                check_counts(
                    collection,
                    where,
                    IntegrityRecord.from_dict(record, where),
                    int(info.points_count or 0),
                    self.vector_counts(collection),
                )
            self._checked.add(collection)
        return schema, sizes

    def _search_params(self, schema: CollectionSchema) -> Any:
        """Quantisation rescoring and graph ``ef`` (``None`` in-memory: it searches exactly and warns)."""
        return None if self._local else client_config.search_params(schema)

    @contextmanager
    def _errors(self, collection: str | None) -> Iterator[None]:
        """Turn qdrant-client/httpx exceptions into one-line StoreErrors (and name what was missing)."""
        import httpx
        from qdrant_client.http.exceptions import ApiException, ResponseHandlingException, UnexpectedResponse

        try:
            yield
        except StoreError:
            raise
        except UnexpectedResponse as exc:
            if exc.status_code in (401, 403):
                raise StoreError(
                    "the server rejected the API key (set --api-key or CXRSEARCH_QDRANT_API_KEY)", path=self.location
                ) from None
            if exc.status_code == 404 and collection is not None:
                raise StoreError(f"no collection {collection!r} on this server", path=self.location) from None
            raise StoreError(f"Qdrant answered {exc.status_code}: {_reason(exc)}", path=self.location) from None
        except (ResponseHandlingException, httpx.HTTPError, ConnectionError) as exc:
            cause = getattr(exc, "source", exc)
            if isinstance(cause, httpx.TimeoutException) or isinstance(exc, httpx.TimeoutException):
                raise StoreError(
                    f"the Qdrant server accepted the connection but gave no answer within {self.timeout} s "
                    "(is it overloaded, or not a Qdrant server? --timeout or CXRSEARCH_QDRANT_TIMEOUT sets the limit)",
                    path=self.location,
                ) from None
            raise StoreError(
                f"cannot reach the Qdrant server ({cause}); is it running? (see docs/server.md)", path=self.location
            ) from None
        except (ApiException, ValueError, KeyError) as exc:
            if collection is not None and self._local and not self._client.collection_exists(collection):
                raise StoreError(f"no collection {collection!r} on this server", path=self.location) from None
            raise StoreError(f"qdrant-client: {exc}", path=self.location) from exc

    # -- facets and diversity (retrieval v2) ---------------------------------------------------------
    def facet(self, collection: str, key: str, filter: Filter | None = None, limit: int = 50) -> list[tuple[str, int]]:
        """Exact ``(value, count)`` of keyword field ``key`` over the points passing ``filter``, most
        frequent first (ties by value). The field must be keyword-indexed in the collection's schema
        (a server needs the index; the in-memory client does not, but refuses the same fields)."""
        check_limit(limit)
        schema, _ = self._layout(collection)
        check_facet_key(collection, schema, key, f"{self.location} collection {collection}")
        with self._errors(collection):
            response = self._client.facet(collection, key=key, facet_filter=to_client(filter), limit=limit, exact=True)
        return facet_counts(((hit.value, hit.count) for hit in response.hits), limit)

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
        """Maximal marginal relevance over the ``candidates`` nearest neighbours (see
        :meth:`Store.search_diverse`): Qdrant's ``Mmr(diversity=...)``, 0 = plain nearest order."""
        from qdrant_client import models

        check_limit(limit)
        weight = check_diversity(diversity)
        pool = mmr_candidates(limit, candidates)
        schema, sizes = self._layout(collection)
        check_dense_for_mmr(collection, schema, vector_name)
        query = models.NearestQuery(
            nearest=cast(  # dense: checked above
                "list[float]", as_query_vector(collection, sizes, vector_name, vector, stored=self._stored(collection))
            ),
            mmr=models.Mmr(diversity=weight, candidates_limit=pool),
        )
        return self._nearest(collection, schema, query, vector_name, filter, limit)


def _client_fusion(fusion: str, weights: list[float] | None) -> Any:
    """qdrant-client's query that fuses the prefetches (:data:`~cxrsearch.store.base.FUSIONS`)."""
    from qdrant_client import models

    if fusion == "rrf":
        return models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=weights))
    terms: list[Any] = [models.MultExpression(mult=[w, score_variable(i)]) for i, w in enumerate(weights or ())]
    return models.FormulaQuery(
        formula=models.SumExpression(sum=terms), defaults={score_variable(i): 0.0 for i in range(len(terms))}
    )


def _client_vector(vector: list[float] | SparseVector) -> Any:
    """A checked query or point vector in qdrant-client's terms."""
    if isinstance(vector, SparseVector):
        from qdrant_client import models

        return models.SparseVector(indices=list(vector.indices), values=list(vector.values))
    return vector


def _client_vectors(vectors: dict[str, Any]) -> dict[str, Any]:
    return {name: _client_vector(vector) for name, vector in vectors.items()}


def _reason(exc: Any) -> str:
    try:
        return str(exc.structured()["status"]["error"])
    except Exception:  # not JSON: show the raw start
        raw = " ".join(exc.content[:200].decode("utf-8", "replace").split())
        return raw or f"an empty {exc.reason_phrase or 'reply'} (is this URL a Qdrant server?)"
