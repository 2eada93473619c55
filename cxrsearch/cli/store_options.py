"""Options every store-using command shares (``--store``, ``--qdrant-url``, ``--api-key``, ``--timeout``) and the one
helper that opens the store they name. Use them as parameter annotations::

    def command(store: StoreDir = None, qdrant_url: QdrantUrl = None, api_key: ApiKey = None):
        with opened_store(store, qdrant_url, api_key) as st:
            ...

Environment variables are resolved by :func:`cxrsearch.store.open_store`, not by click, so that an
explicit ``--store`` beats ``CXRSEARCH_QDRANT_URL`` (flag > environment > default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from cxrsearch.store import Store

StoreDir = Annotated[
    Optional[Path],
    typer.Option(
        "--store",
        metavar="DIR",
        show_default=False,
        help="Embedded store directory (default: $CXRSEARCH_STORE, else the user data dir).",
    ),
]
QdrantUrl = Annotated[
    Optional[str],
    typer.Option(
        "--qdrant-url",
        metavar="URL",
        show_default=False,
        help="Use the Qdrant server at URL instead of the embedded store (default: $CXRSEARCH_QDRANT_URL).",
    ),
]
ApiKey = Annotated[
    Optional[str],
    typer.Option(
        "--api-key",
        metavar="KEY",
        show_default=False,
        help="Qdrant server API key (default: $CXRSEARCH_QDRANT_API_KEY; prefer the variable: "
        "flags show in the process list).",
    ),
]

Timeout = Annotated[
    Optional[int],
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=1,
        show_default=False,
        help="Seconds a Qdrant server call may take (default: $CXRSEARCH_QDRANT_TIMEOUT, else 10).",
    ),
]


@contextmanager
def opened_store(
    store: Optional[Path] = None,
    qdrant_url: Optional[str] = None,
    api_key: Optional[str] = None,
    timeout: Optional[int] = None,
) -> Iterator[Store]:
    """Open the store the options name and close it afterwards (the embedded store flushes then)."""
    from cxrsearch.store import open_store

    backend = open_store(store, url=qdrant_url, api_key=api_key, timeout=timeout)
    try:
        yield backend
    finally:
        backend.close()
