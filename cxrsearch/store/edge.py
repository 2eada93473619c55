"""The embedded store: qdrant-edge (the Qdrant engine in-process: segments, WAL, payload indexes).

Layout under the store directory, one directory per collection::

    <store>/<collection>/collection.json   schema, vector size, engine version (written last), and
                                           the local roots of relative payload paths (``roots``)
    <store>/<collection>/integrity.json    counts and id digest at the last clean close (see store.integrity)
    <store>/<collection>/shard/            the qdrant-edge shard (WAL + segments)
    <store>/<collection>/.lock             held (flock) by the process that has the shard open

A collection is opened on first use and stays open until :meth:`EdgeStore.close`; a second process
gets a one-line :class:`StoreError` naming the directory and the holder's pid. Fresh points live in
an appendable segment that is searched exactly; ``close()`` after writes runs the segment optimiser,
which builds the schema's int8 quantised copy (no HNSW graph with the shipped ``cases`` schema, see
``docs/performance.md``). Searches rescore quantised candidates with the float vectors. RRF fusion is
qdrant-edge's own (``Fusion.Rrf`` over prefetches), the same as a server's.

Opening compares the engine's point and vector counts with ``integrity.json``
(:func:`cxrsearch.store.integrity.check_counts`); the first write of a session removes the record,
a clean :meth:`EdgeStore.close` writes it again. The engine opens its segment files for writing, so a
store on a read-only file system cannot be searched in place: that is one line saying what to do.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from cxrsearch.errors import StoreError
from cxrsearch.files import write_atomic
from cxrsearch.store import edge_config
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
from cxrsearch.store.filters import to_edge
from cxrsearch.store.integrity import check_counts, make_record
from cxrsearch.store.readahead import read_ahead
from cxrsearch.store.schema import CollectionSchema, check_collection_name

if TYPE_CHECKING:
    import numpy as np

META_FILE = "collection.json"
META_FORMAT = 1
INTEGRITY_FILE = "integrity.json"
READ_ONLY_HINT = (
    "the embedded engine opens its files for writing, so a read-only store cannot be searched in place: "
    "copy it to a writable directory (`cp -r`) and pass that as --store, or serve it from a Qdrant "
    "server (`cxrsearch collections migrate`)"
)


@dataclass
class _Open:
    """An open collection: its metadata, shard, lock file and whether it was written to."""

    meta: dict[str, Any]
    schema: CollectionSchema
    shard: Any
    lock: TextIO
    dirty: bool = False

    @property
    def vector_sizes(self) -> dict[str, int]:
        if "vector_sizes" in self.meta:
            return {name: int(size) for name, size in self.meta["vector_sizes"].items()}
        return {name: int(self.meta["vector_size"]) for name in self.schema.vectors}  # collections of 0.1


class EdgeStore:
    """:class:`~cxrsearch.store.base.Store` over qdrant-edge shards in ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.location = str(self.root)
        self._open: dict[str, _Open] = {}
        if self.root.exists() and not self.root.is_dir():
            raise StoreError("the store path exists but is not a directory", path=self.root)

    # -- collections -------------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / META_FILE).is_file())

    def collection_info(self, collection: str, check: bool = True) -> CollectionInfo:
        """``check=False`` opens a collection whose counts disagree with its integrity record."""
        handle = self._handle(collection, check=check)
        return CollectionInfo(
            name=collection,
            points_count=int(handle.shard.info().points_count),
            vector_sizes=handle.vector_sizes,
            schema=handle.schema,
            location=str(self.root / collection),
        )

    def create_collection(
        self, collection: str, schema: CollectionSchema, vector_size: int, label_size: int | None = None
    ) -> bool:
        check_collection_name(collection)
        check_vector_size(vector_size)
        sizes = schema.vector_sizes(vector_size, label_size)
        directory = self.root / collection
        if not (directory / META_FILE).is_file():
            directory.mkdir(parents=True, exist_ok=True)
            lock = _acquire(directory)
            if not (directory / META_FILE).is_file():  # nobody created it while we waited for the lock
                self._open[collection] = self._create(directory, schema, vector_size, sizes, lock)
                return True
            lock.close()
        handle = self._handle(collection)
        check_same_collection(collection, str(directory), handle.schema, handle.vector_sizes, schema, sizes)
        return False

    def _create(
        self, directory: Path, schema: CollectionSchema, vector_size: int, sizes: dict[str, int], lock: TextIO
    ) -> _Open:
        """Create the shard, its payload indexes, then ``collection.json`` (atomically, last)."""
        import qdrant_edge as qe

        shard = None
        try:
            shard_dir = directory / "shard"
            if shard_dir.exists():  # left by a create that died before writing collection.json
                shutil.rmtree(shard_dir)
            shard = qe.EdgeShard.create(str(shard_dir), edge_config.shard_config(schema, sizes))
            for op in edge_config.payload_index_ops(schema):
                shard.update(op)
            shard.flush()
            meta = {
                "format": META_FORMAT,
                "name": directory.name,
                "vector_size": vector_size,
                "vector_sizes": sizes,
                "schema": schema.to_dict(),
                "engine": f"qdrant-edge-py {_engine_version()}",
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_atomic(directory / META_FILE, json.dumps(meta, indent=2) + "\n")
        except Exception as exc:
            if shard is not None:
                shard.close()
            lock.close()
            raise StoreError(f"cannot create collection {directory.name!r}: {exc}", path=directory) from exc
        return _Open(meta, schema, shard, lock, dirty=True)  # its close records the (empty) state

    def drop_collection(self, collection: str) -> None:
        """Delete the collection's folder under its lock; the shard is not loaded to be deleted (so a
        damaged one can be dropped too)."""
        handle = self._open.pop(collection, None)
        if handle is not None:
            handle.shard.close()
            lock = handle.lock
        else:
            lock = _acquire(self._existing(collection))
        try:
            shutil.rmtree(self.root / collection)
        finally:
            lock.close()

    # -- points ------------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Iterable[Point], batch: int = 256) -> int:
        import qdrant_edge as qe

        handle = self._handle(collection)
        sizes, sparse = handle.vector_sizes, handle.schema.sparse_names
        total = 0
        for chunk in batched(points, batch):
            records = [
                qe.Point(p.id, _edge_vectors(vectors), plain_payload(collection, p.id, p.payload))
                for p, vectors in zip(chunk, points_vectors(collection, sizes, chunk, sparse))
            ]
            if not handle.dirty:  # a writer killed from here on leaves no record, never a stale one
                (self.root / collection / INTEGRITY_FILE).unlink(missing_ok=True)
                handle.dirty = True
            self._call(collection, handle.shard.update, qe.UpdateOperation.upsert_points(records))
            total += len(records)
        return total

    def count(self, collection: str, filter: Filter | None = None) -> int:
        import qdrant_edge as qe

        handle = self._handle(collection)
        return int(self._call(collection, handle.shard.count, qe.CountRequest(exact=True, filter=to_edge(filter))))

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        handle = self._handle(collection)
        found: set[str] = set()
        for chunk in batched(ids, 1024):
            records = self._call(collection, handle.shard.retrieve, list(chunk), False, False)
            found.update(str(r.id) for r in records)
        return found

    def retrieve(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        handle = self._handle(collection)
        by_id: dict[str, Point] = {}
        for chunk in batched(ids, 1024):
            for record in self._call(collection, handle.shard.retrieve, list(chunk), True, with_vectors):
                by_id[str(record.id)] = record_point(record, with_vectors)
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
        import qdrant_edge as qe

        check_limit(limit)
        handle = self._handle(collection)
        query = _edge_vector(
            as_query_vector(
                collection,
                handle.vector_sizes,
                vector_name,
                vector,
                handle.schema.sparse_names,
                self._stored(collection),
            )
        )
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(query, using=vector_name),
            filter=to_edge(filter),
            with_payload=True,
            with_vector=with_vectors,
            params=edge_config.search_params(handle.schema),
        )
        return [scored_hit(p, with_vectors) for p in self._call(collection, handle.shard.query, request)]

    def search_fused(
        self,
        collection: str,
        queries: Sequence[tuple[str, QueryVector]],
        filter: Filter | None = None,
        limit: int = 10,
        weights: Sequence[float] | None = None,
        fusion: str = "rrf",
    ) -> list[Hit]:
        import qdrant_edge as qe

        check_limit(limit)
        weights = check_fusion(collection, queries, weights, fusion)
        handle = self._handle(collection)
        params = edge_config.search_params(handle.schema)
        edge_filter = to_edge(filter)
        sparse = handle.schema.sparse_names
        stored = self._stored(collection)
        # the filter is given once, on the fusion: the engine applies it inside every prefetch (each
        # list holds only passing points; a per-prefetch copy made each list evaluate it again)
        prefetches = [
            qe.Prefetch(
                limit=prefetch_limit(limit),
                params=None if name in sparse else params,
                query=qe.Query.Nearest(
                    _edge_vector(as_query_vector(collection, handle.vector_sizes, name, vec, sparse, stored)),
                    using=name,
                ),
            )
            for name, vec in queries
        ]
        request = qe.QueryRequest(
            limit=limit,
            prefetches=prefetches,
            query=_edge_fusion(fusion, weights),
            filter=edge_filter,
            with_payload=True,
        )
        return [scored_hit(p, False) for p in self._call(collection, handle.shard.query, request)]

    def scroll(
        self, collection: str, filter: Filter | None = None, with_vectors: bool = False, batch: int = 256
    ) -> Iterator[Point]:
        import qdrant_edge as qe

        check_limit(batch, "batch")
        handle = self._handle(collection)
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch, filter=to_edge(filter), with_payload=True, with_vector=with_vectors
            )
            records, offset = self._call(collection, handle.shard.scroll, request)
            yield from (record_point(r, with_vectors) for r in records)
            if offset is None:
                return

    def close(self) -> None:
        """Optimise collections written to (builds the quantised segments), flush, release locks."""
        errors: list[str] = []
        for name, handle in list(self._open.items()):
            try:
                if handle.dirty:  # a reader has nothing to flush (0.1-0.3 s a query would wait for)
                    handle.shard.optimize()
                    handle.shard.flush()
                    self._write_record(name, handle)
                handle.shard.close()
            except Exception as exc:  # keep closing the others, then report
                errors.append(f"{name}: {exc}")
            finally:
                handle.lock.close()
                del self._open[name]
        if errors:
            raise StoreError(f"closing the store failed: {'; '.join(errors)}", path=self.root)

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- local roots -------------------------------------------------------------------------------
    def roots(self, collection: str) -> dict[str, str]:
        if collection in self._open:
            return dict(self._open[collection].meta.get("roots") or {})
        path = self.root / collection / META_FILE
        try:  # read without opening the shard (and without taking the lock)
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {META_FILE}: {exc}", path=path) from None
        return dict(meta.get("roots") or {})

    def layout(self, collection: str) -> tuple[CollectionSchema, dict[str, int]]:
        """Schema and vector sizes from ``collection.json``, without opening the shard or taking the
        lock (for a collection another process holds, e.g. ``cxrsearch serve``)."""
        path = self.root / collection / META_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            schema = CollectionSchema.from_dict(meta["schema"], source=path)
            sizes = {n: int(v) for n, v in (meta.get("vector_sizes") or {}).items()} or {
                n: int(meta["vector_size"]) for n in schema.vectors
            }
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"cannot read {META_FILE}: {exc}", path=path) from None
        return schema, sizes

    def set_roots(self, collection: str, roots: Mapping[str, str]) -> None:
        handle = self._handle(collection)
        merged = {**(handle.meta.get("roots") or {}), **{k: str(v) for k, v in roots.items()}}
        if merged == handle.meta.get("roots"):
            return
        handle.meta["roots"] = merged
        write_atomic(self.root / collection / META_FILE, json.dumps(handle.meta, indent=2) + "\n")

    # -- integrity ---------------------------------------------------------------------------------
    def integrity_record(self, collection: str) -> IntegrityRecord | None:
        """The record of the last clean close (``None``: none yet, or a write did not close cleanly)."""
        path = self.root / collection / INTEGRITY_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the integrity record: {exc}", path=path) from None
        return IntegrityRecord.from_dict(raw, str(path))

    def vector_counts(self, collection: str) -> dict[str, int]:
        """Exact number of points holding each named vector (dense and sparse)."""
        return _vector_counts(self._handle(collection, check=False))

    def _write_record(self, collection: str, handle: _Open) -> None:
        import qdrant_edge as qe

        ids: list[str] = []
        offset = None
        while True:
            records, offset = handle.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=4096, with_payload=False, with_vector=False)
            )
            ids.extend(str(r.id) for r in records)
            if offset is None:
                break
        record = make_record(handle.shard.info().points_count, _vector_counts(handle), ids)
        write_atomic(self.root / collection / INTEGRITY_FILE, json.dumps(record.to_dict(), indent=2) + "\n")

    # -- internals ---------------------------------------------------------------------------------
    def _existing(self, collection: str) -> Path:
        """The folder of ``collection``; StoreError listing the store's collections when there is none."""
        directory = self.root / collection
        if not (directory / META_FILE).is_file():
            known = ", ".join(self.list_collections()) or "none"
            raise StoreError(
                f"no collection {collection!r} in this store (collections: {known}); "
                "create it with `cxrsearch collections create` or `cxrsearch index`",
                path=self.root,
            )
        return directory

    def _handle(self, collection: str, check: bool = True) -> _Open:
        if collection not in self._open:  # opened unchecked (verify) stays so for this store object
            self._open[collection] = self._load(collection, check)
        return self._open[collection]

    def _load(self, collection: str, check: bool) -> _Open:
        """Lock and load ``collection``'s shard (and compare its counts with the integrity record)."""
        import qdrant_edge as qe

        directory = self._existing(collection)
        lock = _acquire(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != META_FORMAT:
                raise StoreError(f"{META_FILE} has format {meta.get('format')!r}; this cxrsearch reads {META_FORMAT}")
            schema = CollectionSchema.from_dict(meta["schema"], source=directory / META_FILE)
            read_ahead(directory / "shard")  # the engine dropped its page cache at the last close
            shard = qe.EdgeShard.load(str(directory / "shard"))
        except (OSError, KeyError, ValueError, StoreError) as exc:
            lock.close()
            raise StoreError(f"cannot open collection {collection!r}: {exc}", path=directory) from exc
        except Exception as exc:  # the engine's own errors (corrupt segments, WAL...)
            lock.close()
            if "Read-only file system" in str(exc) or "os error 30" in str(exc):
                raise StoreError(f"the store is on a read-only file system; {READ_ONLY_HINT}", path=directory) from None
            raise StoreError(f"qdrant-edge cannot load the shard: {exc}", path=directory / "shard") from exc
        handle = _Open(meta, schema, shard, lock)
        if check:
            try:
                self._check(collection, handle)
            except StoreError:
                shard.close()
                lock.close()
                raise
        return handle

    def _check(self, collection: str, handle: _Open) -> None:
        """Compare the engine's counts with the integrity record (StoreError on a mismatch)."""
        check_counts(
            collection,
            str(self.root / collection),
            self.integrity_record(collection),
            int(handle.shard.info().points_count),
            _vector_counts(handle),
        )

    def _stored(self, collection: str) -> Callable[[str, str], Any]:
        """Reads the stored vector a :class:`StoredVector` query names (as the engine returns it)."""

        def read(point_id: str, name: str) -> Any:
            records = self._call(collection, self._handle(collection).shard.retrieve, [point_id], False, True)
            return stored_vector(collection, records, point_id, name)

        return read

    def _call(self, collection: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except StoreError:
            raise
        except Exception as exc:  # engine errors carry no type of their own: name the collection
            raise StoreError(f"qdrant-edge: {exc}", path=self.root / collection) from exc

    # -- facets and diversity (retrieval v2) ---------------------------------------------------------
    def facet(self, collection: str, key: str, filter: Filter | None = None, limit: int = 50) -> list[tuple[str, int]]:
        """Exact ``(value, count)`` of keyword field ``key`` over the points passing ``filter``, most
        frequent first (ties by value). The field needs a keyword payload index (``cases`` has them)."""
        import qdrant_edge as qe

        check_limit(limit)
        handle = self._handle(collection)
        check_facet_key(collection, handle.schema, key, str(self.root / collection))
        request = qe.FacetRequest(key, limit=limit, exact=True, filter=to_edge(filter))
        response = self._call(collection, handle.shard.facet, request)
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
        :meth:`Store.search_diverse`). qdrant-edge's ``Mmr.lambda_`` weighs *relevance* (1 = plain
        nearest order), the server's ``diversity`` weighs diversity: ``lambda_ = 1 - diversity``."""
        import qdrant_edge as qe

        check_limit(limit)
        weight = check_diversity(diversity)
        pool = mmr_candidates(limit, candidates)
        handle = self._handle(collection)
        check_dense_for_mmr(collection, handle.schema, vector_name)
        query = cast(  # dense: checked above
            "list[float]",
            as_query_vector(collection, handle.vector_sizes, vector_name, vector, stored=self._stored(collection)),
        )
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Mmr(query, 1.0 - weight, pool, using=vector_name),
            filter=to_edge(filter),
            with_payload=True,
            params=edge_config.search_params(handle.schema),
        )
        return [scored_hit(p, False) for p in self._call(collection, handle.shard.query, request)]


def _edge_fusion(fusion: str, weights: list[float] | None) -> Any:
    """The engine's query that fuses the prefetches (:data:`~cxrsearch.store.base.FUSIONS`)."""
    import qdrant_edge as qe

    if fusion == "rrf":
        return qe.Fusion.Rrf(k=RRF_K, weights=weights)
    terms = [
        qe.Expression.Mult([qe.Expression.Constant(w), qe.Expression.Variable(score_variable(i))])
        for i, w in enumerate(weights or ())
    ]
    return qe.Formula(qe.Expression.Sum(terms), defaults={score_variable(i): 0.0 for i in range(len(terms))})


def _edge_vector(vector: list[float] | SparseVector) -> Any:
    """A checked query or point vector in qdrant-edge's terms."""
    if isinstance(vector, SparseVector):
        import qdrant_edge as qe

        return qe.SparseVector(list(vector.indices), list(vector.values))
    return vector


def _edge_vectors(vectors: dict[str, Any]) -> dict[str, Any]:
    return {name: _edge_vector(vector) for name, vector in vectors.items()}


def _vector_counts(handle: _Open) -> dict[str, int]:
    import qdrant_edge as qe

    names = [*handle.schema.vectors, *handle.schema.sparse_names]
    return {
        name: int(handle.shard.count(qe.CountRequest(exact=True, filter=qe.Filter(must=[qe.HasVectorCondition(name)]))))
        for name in names
    }


SERVER_RECORD = ".serve.json"
"""Written beside ``.lock`` by a ``cxrsearch serve`` holding the collection (see cxrsearch.serve.registry)."""


def read_server_record(directory: Path) -> dict[str, Any]:
    """The ``cxrsearch serve`` record beside a collection's lock, as written (``{}``: none, unreadable)."""
    try:
        record = json.loads((directory / SERVER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _server_holding(directory: Path, holder: str) -> str | None:
    """The URL of the ``cxrsearch serve`` whose pid ``holder`` holds the lock, if its record says so."""
    record = read_server_record(directory)
    return str(record.get("url")) if str(record.get("pid")) == holder and record.get("url") else None


def _acquire(directory: Path) -> TextIO:
    """Take the collection's lock file (exclusive, non-blocking) and write our pid into it."""
    import fcntl

    try:
        handle = open(directory / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held until close
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise StoreError(f"the store is on a read-only file system; {READ_ONLY_HINT}", path=directory) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StoreError(
                f"cannot write the collection's lock file (permission denied); {READ_ONLY_HINT}", path=directory
            ) from None
        raise StoreError(f"cannot open the collection's lock file: {exc.strerror}", path=directory) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        server = _server_holding(directory, holder)
        if server is not None:
            raise StoreError(
                f"served by `cxrsearch serve` (pid {holder}) at {server}: `cxrsearch search`, `explain` and "
                "`collections list/info` go through it; this command needs the collection itself: "
                "use the page, or stop the server (Ctrl-C) first",
                path=directory,
            ) from None
        raise StoreError(
            f"in use by another process (pid {holder}); wait for it to finish or use another --store", path=directory
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _engine_version() -> str:
    from importlib.metadata import version

    return version("qdrant-edge-py")
