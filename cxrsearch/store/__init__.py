"""Storage: collections of cases in Qdrant, embedded (qdrant-edge) or on a server (qdrant-client).

>>> store = open_store()                       # embedded, at cxrsearch.paths.store_dir()
>>> store = open_store(url="http://localhost:6333", api_key="...")   # a Qdrant server
>>> store = open_store(location=":memory:")    # qdrant-client's in-process API (tests)

Everything else speaks :class:`Point`, :class:`Filter`, :class:`Hit` (see :mod:`cxrsearch.store.base`).
Nothing here imports qdrant at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrsearch import paths
from cxrsearch.errors import StoreError
from cxrsearch.store.base import RRF_K, CollectionInfo, Filter, Hit, Point, Store, point_id
from cxrsearch.store.edge import EdgeStore
from cxrsearch.store.schema import CollectionSchema, list_schemas, load_schema

URL_ENV = "CXRSEARCH_QDRANT_URL"
API_KEY_ENV = "CXRSEARCH_QDRANT_API_KEY"
TIMEOUT_ENV = "CXRSEARCH_QDRANT_TIMEOUT"
DEFAULT_TIMEOUT = 10
"""Seconds a server call may take before it fails with a one-line error (``CXRSEARCH_QDRANT_TIMEOUT``)."""


def server_timeout() -> int:
    """``CXRSEARCH_QDRANT_TIMEOUT`` (whole seconds >= 1), else :data:`DEFAULT_TIMEOUT`."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    if not raw.isdigit() or int(raw) < 1:
        raise StoreError(f"{TIMEOUT_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_TIMEOUT",
    "RRF_K",
    "TIMEOUT_ENV",
    "URL_ENV",
    "CollectionInfo",
    "CollectionSchema",
    "Filter",
    "Hit",
    "Point",
    "Store",
    "list_schemas",
    "load_schema",
    "open_store",
    "point_id",
    "server_timeout",
]


def open_store(
    store_dir: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    *,
    location: str | None = None,
    timeout: int | None = None,
) -> Store:
    """Open the store to use.

    ``location=":memory:"`` -> qdrant-client in-memory. Else a server when ``url`` (or
    ``CXRSEARCH_QDRANT_URL``) is set, with ``api_key`` (or ``CXRSEARCH_QDRANT_API_KEY``). Else the
    embedded store in ``store_dir`` (or ``CXRSEARCH_STORE``, or the per-user data directory).
    An explicit ``store_dir`` beats ``CXRSEARCH_QDRANT_URL``; an explicit ``url`` and ``store_dir``
    together are an error (the caller must mean one of them). Server calls time out after
    ``timeout`` seconds (default :func:`server_timeout`).
    """
    if location is not None:
        if location != ":memory:":
            raise StoreError(f"unknown store location {location!r} (only ':memory:' is supported)")
        from cxrsearch.store.client import ClientStore

        return ClientStore.in_memory()
    if url and store_dir is not None:
        raise StoreError(f"both a store directory ({store_dir}) and a Qdrant URL ({url}) were given; pick one")
    if not url and store_dir is None:  # an explicit store directory beats the URL environment variable
        url = os.environ.get(URL_ENV) or None
    if url:
        from cxrsearch.store.client import ClientStore

        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
            raise StoreError(f"the server timeout must be a whole number of seconds >= 1, got {timeout!r}")
        return ClientStore.connect(
            url,
            api_key or os.environ.get(API_KEY_ENV) or None,
            timeout=server_timeout() if timeout is None else timeout,
        )
    return EdgeStore(paths.store_dir(store_dir))
