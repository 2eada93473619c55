"""The FastAPI application of ``cxrsearch serve``: server-rendered pages, ``/api/`` (the JSON the
CLI prints), radiographs rendered through the project's decoder, and the guards of
:mod:`cxrsearch.serve.security`. ``create_app(service)`` builds it over an open
:class:`~cxrsearch.serve.service.Service` from the routers of :mod:`cxrsearch.serve.routes` (one per
concept, sharing an :class:`~cxrsearch.serve.routes.state.AppState`); uvicorn serves it
(:mod:`cxrsearch.cli.serve`).

Pages and their URLs (docs/web.md):

- ``GET /``: the search form (text, an uploaded radiograph, or ``like``; label all/any/not, view,
  split), the hits as cards and the label facets of every matching case;
- ``POST /search``: the form with an upload: the image is checked and kept under its sha256, then
  the browser is sent to ``GET /?upload=<sha256>&...`` (bookmarkable, like every result page);
- ``GET /case/{id}``: one case: the radiograph, the whole report, "explain this match";
  ``POST /case/{id}/explain`` starts the explanation; the page shows its progress until done;
- ``GET /image/{id}/thumb.png``, ``/image/{id}/full.png``: the radiograph, re-rendered;
- ``GET /explain/{job}/{ig|attention|figure}.png``: an explanation's overlays.

API: ``GET|POST /api/search`` (``search --json``), ``GET /api/case/{id}``, ``POST /api/explain``
(``explain --json`` once done; ``wait=S`` blocks up to S seconds), ``GET /api/explain/{job}``,
``GET /api/info``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cxrsearch.serve.jobs import ExplainJobs
from cxrsearch.serve.routes import explain_api, images, pages, search_api
from cxrsearch.serve.routes.state import STATE_ATTRIBUTE, AppState
from cxrsearch.serve.security import BodyLimit, HostGuard, SecurityHeaders, TokenGuard
from cxrsearch.serve.settings import LOOPBACK_NAMES, is_loopback

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings

FORM_OVERHEAD = 1024 * 1024
"""Bytes a request body may hold beyond the upload cap (the form's other fields)."""
ROUTERS = (pages.router, images.router, search_api.router, explain_api.router)
"""The routes, in the order they are matched (:mod:`cxrsearch.serve.routes`)."""


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """Host names answered: loopback names on a loopback bind (against DNS rebinding), any otherwise
    (the token protects a non-loopback bind)."""
    return tuple(LOOPBACK_NAMES) + (host,) if is_loopback(host) else None


def create_app(service: Service, hosts: tuple[str, ...] | None | str = "auto") -> Any:
    """The ASGI app over ``service`` (``hosts``: Host names answered; ``"auto"``: :func:`allowed_hosts`)."""
    state = AppState(service, ExplainJobs(service))
    app = build_fastapi(state)
    guarded = guard(app, service.settings, allowed_hosts(service.settings.host) if hosts == "auto" else hosts)
    guarded.app_state = app.state  # tests reach the service and the jobs here
    return guarded


def build_fastapi(state: AppState) -> FastAPI:
    """The FastAPI app: the static files, :data:`ROUTERS`, and ``state`` on ``app.state``."""
    from importlib import resources

    app = FastAPI(title="cxrsearch", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("cxrsearch.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.state.service, app.state.jobs = state.service, state.jobs
    setattr(app.state, STATE_ATTRIBUTE, state)
    for router in ROUTERS:
        app.include_router(router)
    return app


def guard(app: Any, settings: ServeSettings, hosts: Iterable[str] | None) -> Any:
    """``app`` behind the guards of :mod:`cxrsearch.serve.security` (body cap, Host names, token,
    response headers), outermost last."""
    guarded: Any = BodyLimit(app, settings.max_upload_bytes + FORM_OVERHEAD)
    guarded = HostGuard(guarded, hosts)
    guarded = TokenGuard(guarded, settings.token)
    return SecurityHeaders(guarded)
