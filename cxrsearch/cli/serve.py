"""``cxrsearch serve``: the local web app (search form, cards, case pages, explain, ``/api/``).

FastAPI, uvicorn and the model load only when the command runs (``cxrsearch --help`` stays fast).
Safe by default: binds 127.0.0.1; another address needs ``--token`` (or ``$CXRSEARCH_SERVE_TOKEN``).
See docs/web.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cxrsearch.cli.render import err_console
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, opened_store


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
    collection: str = typer.Option("cases", "--collection", metavar="NAME", help="Collection to search."),
    max_upload_mb: int = typer.Option(64, "--max-upload-mb", metavar="MB", min=1, help="Largest accepted upload."),
    steps: int = typer.Option(32, "--steps", metavar="N", help='Integrated Gradients steps of "explain this match".'),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Serve the index as a local web app: search, case pages with the radiograph, explanations, JSON API."""
    import uvicorn

    from cxrsearch.serve.app import create_app
    from cxrsearch.serve.registry import announce, withdraw
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings
    from cxrsearch.store.edge import EdgeStore

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
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        points = service.store.count(collection)
        err_console.print(
            f"serving collection '{collection}' ({points:,} points) at {url}"
            + (" (open it once with ?token=<your token>)" if settings.token else "")
            + "; Ctrl-C stops it"
        )
        # the terminal beside it: read-only commands find this server here (cxrsearch.serve.registry)
        record = (
            announce(backend.root, collection, host, port, bool(settings.token))
            if isinstance(backend, EdgeStore)
            else None
        )
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        finally:
            if record is not None:
                withdraw(record)
            app.app_state.jobs.close()
