"""The server's state: one open store, the loaded checkpoint, and the calls the pages and ``/api/``
make. Search goes through :func:`run_search`, the same library calls as ``cxrsearch search``
(spec -> ``search`` / ``search_diverse`` -> collapse -> ``hit_record``), so a page, ``/api/search``
and ``cxrsearch search --json`` see the same hits.

The embedded store admits one process per collection (a lock): the server holds it open while it
runs. Store calls are serialised through :class:`LockedStore` (requests run in a thread pool and an
explanation runs beside them); the model stays loaded: a text query uses a text-only encoder (the
fast text path where the architecture allows it), image queries and explanations a full one.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.data.splits import SPLITS
from cxrsearch.defaults import VIEWS
from cxrsearch.errors import QueryError
from cxrsearch.search.collapse import collapse as collapse_hits
from cxrsearch.search.collapse import uncollapsed
from cxrsearch.search.query import (
    collection_notices,
    encoder_for,
    find_example,
    query_encoder,
    reading_notices,
    search_to_show,
)
from cxrsearch.search.query import facets as count_labels
from cxrsearch.search.results import hit_record
from cxrsearch.search.spec import QuerySpec
from cxrsearch.search.vocabulary import collection_labels
from cxrsearch.serve.files import collection_image_roots, resolve_image
from cxrsearch.serve.settings import ServeSettings
from cxrsearch.serve.thumbs import RenderCache

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.encode import Encoder
    from cxrsearch.store.base import Point, Store

UPLOAD_NAME = re.compile(r"[0-9a-f]{64}")
KEEP_UPLOADS = 64


class LockedStore:
    """A :class:`~cxrsearch.store.base.Store` whose every call holds one lock (``scroll``'s
    generator holds it while it fetches each point)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value
        if name == "scroll":
            return self._scroll
        lock = self._lock

        @functools.wraps(value)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return value(*args, **kwargs)

        return locked

    def _scroll(self, *args: Any, **kwargs: Any) -> Iterator[Point]:
        with self._lock:
            points = iter(self._store.scroll(*args, **kwargs))
        while True:
            with self._lock:
                point = next(points, None)
            if point is None:
                return
            yield point


@dataclass(frozen=True)
class SearchResult:
    """What one search returned: ``records`` (``search --json``'s hits), ``facets`` (label -> count,
    ``None`` unless asked), ``total`` (points passing the filters, with facets), ``hits`` (the
    shown hits, payloads included), ``notices`` (what the page shows above the hits, e.g. a
    collection made by an older cxrsearch; not part of the JSON: `/api/search` sends them in a header)."""

    records: list[dict[str, Any]]
    facets: dict[str, int] | None
    total: int
    hits: list[Any] = field(repr=False)
    notices: list[str] = field(default_factory=list)

    def json(self) -> Any:
        """Exactly what ``cxrsearch search --json`` prints (with or without ``--facets``)."""
        return self.records if self.facets is None else {"hits": self.records, "facets": self.facets}


def run_search(
    spec: QuerySpec,
    store: Store,
    collection: str,
    checkpoint: Any = None,
    collapse: bool = True,
    diverse: float | None = None,
    facets: bool = False,
    with_components: bool = True,
) -> SearchResult:
    """``cxrsearch search``'s library calls for ``spec``: hits fetched and collapsed (unless
    ``collapse`` is off), MMR with ``diverse``, label counts with ``facets``."""
    checkpoint = query_encoder(spec, store, collection, checkpoint)  # one load for search and notices
    hits = search_to_show(spec, store, collection, checkpoint, collapse, diverse, with_components)
    counts = count_labels(spec, store, collection) if facets else None
    total = store.count(collection, spec.filter()) if facets else 0
    shown = collapse_hits(hits, spec.k) if collapse else uncollapsed(hits)
    records = [hit_record(hit, rank) for rank, hit in enumerate(shown, start=1)]
    notices = collection_notices(spec, store, collection) + reading_notices(spec, store, collection, checkpoint)
    return SearchResult(records, counts, total, shown, notices)


class Service:
    """The open store and loaded model behind the app. ``close()`` releases the store."""

    def __init__(self, store: Store, settings: ServeSettings) -> None:
        self.settings = settings
        self.collection = settings.collection
        self.store = LockedStore(store)
        if self.collection not in self.store.list_collections():
            raise QueryError(
                f"no collection {self.collection!r} in this store (index one first, or run `cxrsearch demo`)",
                path=getattr(store, "location", None),
            )
        self.labels: tuple[str, ...] = collection_labels(self.store, self.collection) or ()
        self.views: tuple[str, ...] = tuple(VIEWS)
        self.splits: tuple[str, ...] = tuple(SPLITS)
        cache = settings.cache_dir
        self.renders = RenderCache(cache / "png")
        self.uploads = cache / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._encoders: dict[str, Encoder] = {}
        self._model_lock = threading.Lock()

    # ------------------------------------------------------------------ model

    def encoder(self, kind: str) -> Encoder:
        """``"text"``: a text-only encoder (fast text path where available); ``"full"``: both towers
        (image queries); ``"explain"``: a second full one, so an explanation never shares a model
        with a running query. Loaded once, checked against the collection's fingerprint."""
        with self._model_lock:
            if kind not in self._encoders:
                if kind == "text":
                    encoder = encoder_for(
                        self.store, self.collection, self.settings.model, towers=("text",), runtime="auto"
                    )
                else:
                    encoder = encoder_for(self.store, self.collection, self.settings.model)
                self._encoders[kind] = encoder
            return self._encoders[kind]

    def warm(self) -> None:
        """Load the text encoder now (the first query then answers warm)."""
        self.encoder("text")

    # ------------------------------------------------------------------ search

    def spec(self, **fields: Any) -> QuerySpec:
        """A :class:`QuerySpec` checked against the collection's vocabulary."""
        return QuerySpec(vocabulary=self.labels or None, **fields)

    def search(
        self, spec: QuerySpec, collapse: bool = True, diverse: float | None = None, facets: bool = False
    ) -> SearchResult:
        checkpoint = None
        if spec.mode == "text":
            checkpoint = self.encoder("text")
        elif spec.mode in ("image", "text+image"):
            checkpoint = self.encoder("full")
        return run_search(
            spec, self.store, self.collection, checkpoint, collapse=collapse, diverse=diverse, facets=facets
        )

    # ------------------------------------------------------------------ cases and files

    def point(self, ident: str) -> Point:
        """The point a page names: a point id, image id or study id (as ``--like``); its payload, not
        its vectors (cards and explain jobs read only the payload and the id)."""
        return find_example(self.store, self.collection, ident, with_vectors=False)

    def image_roots(self) -> list[Path]:
        """Where radiographs may be read: ``--images`` folders first, then the collection's images root."""
        return collection_image_roots(self.store._store, self.collection, self.settings.images)

    def image_file(self, payload: dict[str, Any]) -> Path | None:
        return resolve_image(payload, self.image_roots())

    def has_image(self, payload: dict[str, Any]) -> bool:
        try:
            return self.image_file(payload) is not None
        except QueryError:
            return False

    def render(self, payload: dict[str, Any], side: int) -> bytes:
        path = self.image_file(payload)
        if path is None:
            raise QueryError("this case has no radiograph (a report-only point)")
        return self.renders.png(path, side)

    # ------------------------------------------------------------------ uploads

    def save_upload(self, data: bytes) -> str:
        """Keep an uploaded query image under its sha256 (the name pages refer to it by); checks it
        decodes (the same guards as the CLI) before anything else sees it."""
        from cxrsearch.image.decode import decode_image

        name = hashlib.sha256(data).hexdigest()
        path = self.uploads / name
        if not path.is_file():
            tmp = self.uploads / f".{name}.tmp"
            tmp.write_bytes(data)
            try:
                decode_image(tmp)
            except Exception:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(path)
            self._prune_uploads()
        return name

    def upload_path(self, name: str) -> Path:
        if not UPLOAD_NAME.fullmatch(name or ""):
            raise QueryError("unknown uploaded image (upload it again)")
        path = self.uploads / name
        if not path.is_file():
            raise QueryError("the uploaded image is no longer kept (upload it again)")
        return path

    def _prune_uploads(self) -> None:
        files = sorted(
            (p for p in self.uploads.iterdir() if UPLOAD_NAME.fullmatch(p.name)),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in files[KEEP_UPLOADS:]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        self.store._store.close()


def query_key(values: Sequence[tuple[str, Any]]) -> str:
    """A short stable name for a set of query fields (explanation jobs)."""
    text = "\x1f".join(f"{k}={v}" for k, v in values)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
