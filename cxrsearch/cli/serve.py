"""``cxrsearch serve``: the local web app (search form, cards, case pages, explain, ``/api/``).

FastAPI, uvicorn and the model load only when the command runs (``cxrsearch --help`` stays fast).
Safe by default: binds 127.0.0.1; another address needs ``--token`` (or ``$CXRSEARCH_SERVE_TOKEN``).
See docs/web.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from cxrsearch.cli.render import err_console
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, opened_store
from cxrsearch.defaults import DEFAULT_COLLECTION

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.serve.settings import ServeSettings
    from cxrsearch.store.base import Store


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDR", help="Address to listen on (anything but loopback needs --token)."
    ),
    port: int = typer.Option(8765, "--port", metavar="N", help="Port to listen on."),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        metavar="SECRET",
        envvar="CXRSEARCH_SERVE_TOKEN",
        show_envvar=True,
        help="Shared secret every request must carry (required off loopback; prefer the variable).",
    ),
    images: Optional[List[Path]] = typer.Option(
        None,
        "--images",
        metavar="DIR",
        help="Folder radiographs may be served from (repeatable; default: the collection's images root).",
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", metavar="CKPT", help="Checkpoint directory (default: the one the collection was indexed with)."
    ),
    collection: str = typer.Option(DEFAULT_COLLECTION, "--collection", metavar="NAME", help="Collection to search."),
    max_upload_mb: int = typer.Option(64, "--max-upload-mb", metavar="MB", min=1, help="Largest accepted upload."),
    steps: int = typer.Option(32, "--steps", metavar="N", help='Integrated Gradients steps of "explain this match".'),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Serve the index as a local web app: search, case pages with the radiograph, explanations, JSON API."""
    import uvicorn

    from cxrsearch.serve.app import create_app
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings

    settings = ServeSettings(
        host=host,
        port=port,
        token=token,
        collection=collection,
        model=model,
        images=tuple(images or ()),
        max_upload_bytes=max_upload_mb * 1024 * 1024,
        explain_steps=steps,
    )
    with opened_store(store, qdrant_url, api_key) as backend:
        service = Service(backend, settings)
        err_console.print("[dim]loading the model...[/dim]")
        service.warm()
        app = create_app(service)
        _print_serving(settings, service.store.count(collection))
        try:
            with _announced(backend, settings):
                uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        finally:
            app.app_state.jobs.close()


def _print_serving(settings: ServeSettings, points: int) -> None:
    """The line saying what is served where (stderr)."""
    host = settings.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"
    err_console.print(
        f"serving collection '{settings.collection}' ({points:,} points) at {url}"
        + (" (open it once with ?token=<your token>)" if settings.token else "")
        + "; Ctrl-C stops it"
    )


@contextmanager
def _announced(backend: Store, settings: ServeSettings) -> Iterator[None]:
    """While serving an embedded store, a record of this server beside it: read-only commands in the
    terminal beside it find it there (:mod:`cxrsearch.serve.registry`)."""
    from cxrsearch.serve.registry import announce, withdraw
    from cxrsearch.store.edge import EdgeStore

    if not isinstance(backend, EdgeStore):
        yield
        return
    record = announce(backend.root, settings.collection, settings.host, settings.port, bool(settings.token))
    try:
        yield
    finally:
        withdraw(record)
