"""The FastAPI application of ``cxrsearch serve``: server-rendered pages, ``/api/`` (the JSON the
CLI prints), radiographs rendered through the project's decoder, and the guards of
:mod:`cxrsearch.serve.security`. ``create_app(service)`` builds it over an open
:class:`~cxrsearch.serve.service.Service`; uvicorn serves it (:mod:`cxrsearch.cli.serve`).

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

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cxrsearch.errors import CxrSearchError, ImageError, QueryError
from cxrsearch.serve import params as qp
from cxrsearch.serve.jobs import ExplainJobs
from cxrsearch.serve.security import BodyLimit, HostGuard, SecurityHeaders, TokenGuard
from cxrsearch.serve.settings import LOOPBACK_NAMES, is_loopback
from cxrsearch.serve.thumbs import FULL_SIDE, THUMB_SIDE
from cxrsearch.serve.view import make_cards, render, word_spans

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.serve.service import SearchResult, Service

FORM_OVERHEAD = 1024 * 1024
"""Bytes a request body may hold beyond the upload cap (the form's other fields)."""
IMAGE_CACHE = "private, max-age=3600"


def _message(exc: CxrSearchError) -> str:
    """The error without the local path it names (the server's layout is not the browser's business)."""
    return " ".join(str(exc.message).split())


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """Host names answered: loopback names on a loopback bind (against DNS rebinding), any otherwise
    (the token protects a non-loopback bind)."""
    return tuple(LOOPBACK_NAMES) + (host,) if is_loopback(host) else None


def create_app(service: Service, hosts: tuple[str, ...] | None | str = "auto") -> Any:
    """The ASGI app over ``service`` (``hosts``: Host names answered; ``"auto"``: :func:`allowed_hosts`)."""
    from importlib import resources

    settings = service.settings
    jobs = ExplainJobs(service)
    app = FastAPI(title="cxrsearch", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("cxrsearch.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.state.service, app.state.jobs = service, jobs

    def vocabulary() -> dict[str, Any]:
        return {"labels": list(service.labels), "views": list(service.views), "splits": list(service.splits)}

    def read_params(request: Request) -> qp.SearchParams:
        return qp.parse(request.query_params.getlist, request.query_params.get)

    def spec_of(params: qp.SearchParams) -> Any:
        image = None if params.upload is None else service.upload_path(params.upload)
        return service.spec(image=image, **params.spec_fields())

    def thumb_for(hit: Any) -> tuple[str | None, str | None]:
        payload = dict(hit.payload)
        if payload.get("kind") == "report" or not payload.get("image_path"):
            return None, "report only: no radiograph indexed"
        if not service.has_image(payload):
            return None, "radiograph not available on this server"
        return f"/image/{quote(hit.id)}/thumb.png", None

    def links(params: qp.SearchParams) -> Any:
        context = params.query_string(only=qp.QUERY_FIELDS)

        def make(record: dict[str, Any]) -> tuple[str, str]:
            case = f"/case/{quote(record['id'])}" + (f"?{context}" if context else "")
            return case, "/?" + qp.SearchParams(like=record["id"]).query_string()

        return make

    async def read_upload(upload: Any) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise QueryError(f"upload too large: the limit is {settings.max_upload_bytes // (1024 * 1024)} MiB")
        if not data:
            raise QueryError("the uploaded file is empty")
        return data

    def search_page(
        request: Request, params: qp.SearchParams, error: str | None, result: SearchResult | None, status: int = 200
    ) -> HTMLResponse:
        cards = [] if result is None else make_cards(result.hits, thumb_for, links(params))
        html = render(
            "search.html",
            params=params,
            error=error,
            result=result,
            cards=cards,
            vocabulary=vocabulary(),
            collection=service.collection,
            upload_name=params.upload,
        )
        return HTMLResponse(html, status_code=status)

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        try:
            params = read_params(request)
        except CxrSearchError as exc:
            return search_page(request, qp.SearchParams(), _message(exc), None, 400)
        if params.empty:
            return search_page(request, params, None, None)
        try:
            result = service.search(spec_of(params), params.collapse, params.diverse, facets=True)
        except CxrSearchError as exc:
            return search_page(request, params, _message(exc), None, 400)
        return search_page(request, params, None, result)

    @app.post("/search")
    async def search_form(request: Request) -> Response:
        form = await request.form()
        try:
            params = qp.parse(form.getlist, lambda name: form.get(name) if isinstance(form.get(name), str) else None)
            upload = form.get("image")
            if upload is not None and not isinstance(upload, str) and upload.filename:
                params = replace(params, upload=service.save_upload(await read_upload(upload)))
        except CxrSearchError as exc:
            return search_page(request, qp.SearchParams(), _message(exc), None, 400)
        return RedirectResponse("/?" + params.query_string(), status_code=303)

    @app.get("/case/{ident}", response_class=HTMLResponse)
    def case_page(ident: str, request: Request) -> HTMLResponse:
        try:
            params = read_params(request)
            point = service.point(ident)
        except CxrSearchError as exc:
            html = render("error.html", title="Case not found", error=_message(exc))
            return HTMLResponse(html, status_code=404)
        payload = dict(point.payload)
        record = make_cards([_as_hit(point)], thumb_for)[0]
        image_url = f"/image/{quote(point.id)}/full.png" if record.thumb else None
        label_target = request.query_params.get("explain_label") or None
        job = jobs.get(_job_key(point.id, params, label_target, settings.explain_steps))
        spans = None
        if job is not None and job.result is not None and job.result.tokens is not None:
            spans = word_spans(job.result.tokens.text, job.result.tokens.words)
        html = render(
            "case.html",
            card=record,
            payload=payload,
            image_url=image_url,
            params=params,
            job=job,
            spans=spans,
            label_target=label_target,
            collection=service.collection,
            query_string=params.query_string(only=qp.QUERY_FIELDS),
            back="/?" + params.query_string() if not params.empty else "/",
            like_url="/?" + qp.SearchParams(like=point.id).query_string(),
            steps=settings.explain_steps,
        )
        return HTMLResponse(html)

    @app.post("/case/{ident}/explain")
    async def explain_form(ident: str, request: Request) -> Response:
        form = await request.form()
        try:
            params = qp.parse(form.getlist, lambda name: form.get(name) if isinstance(form.get(name), str) else None)
            label = form.get("explain_label") if isinstance(form.get("explain_label"), str) else None
            point = service.point(ident)
            _start(point, params, label or None)
        except CxrSearchError as exc:
            return HTMLResponse(render("error.html", title="Cannot explain", error=_message(exc)), status_code=400)
        extra = {"explain_label": label} if label and params.empty else {}
        return RedirectResponse(
            f"/case/{quote(point.id)}?" + params.query_string(only=qp.QUERY_FIELDS, **extra), status_code=303
        )

    def _start(point: Any, params: qp.SearchParams, label: str | None) -> Any:
        payload = dict(point.payload)
        if payload.get("kind") != "report" and payload.get("image_path"):
            service.image_file(payload)  # only radiographs under the configured roots are read
        if params.empty and label is None:
            raise QueryError("nothing to explain against: search first (text, image or like), or pick a label")
        query: dict[str, Any] = {
            "text": params.text,
            "like": params.like,
            "image": None if params.upload is None else service.upload_path(params.upload),
            "label": label if params.empty else None,
        }
        return jobs.start(_job_key(point.id, params, label, settings.explain_steps), point.id, query)

    # ------------------------------------------------------------------ images

    def png(ident: str, side: int) -> Response:
        try:
            (point,) = service.store.retrieve(service.collection, [ident]) or [None]
            if point is None:
                return Response("no such case\n", status_code=404, media_type="text/plain")
            data = service.render(dict(point.payload), side)
        except ImageError:
            return Response("the radiograph cannot be decoded\n", status_code=422, media_type="text/plain")
        except CxrSearchError as exc:
            return Response(_message(exc) + "\n", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers={"cache-control": IMAGE_CACHE})

    @app.get("/image/{ident}/thumb.png")
    def thumb(ident: str) -> Response:
        return png(ident, THUMB_SIDE)

    @app.get("/image/{ident}/full.png")
    def full(ident: str) -> Response:
        return png(ident, FULL_SIDE)

    @app.get("/explain/{key}/{name}.png")
    def explain_png(key: str, name: str) -> Response:
        path = jobs.file(key, name)
        if path is None or not path.is_file():
            return Response("no such explanation image\n", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type="image/png", headers={"cache-control": IMAGE_CACHE})

    # ------------------------------------------------------------------ API

    def api_error(exc: CxrSearchError, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": _message(exc)}, status_code=status)

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        return {"collection": service.collection, "points": service.store.count(service.collection), **vocabulary()}

    @app.get("/api/search")
    def api_search(request: Request) -> Any:
        try:
            params = read_params(request)
            result = service.search(spec_of(params), params.collapse, params.diverse, params.facets)
        except CxrSearchError as exc:
            return api_error(exc)
        return JSONResponse(result.json())

    @app.post("/api/search")
    async def api_search_upload(request: Request, image: UploadFile | None = File(None)) -> Any:
        try:
            form = await request.form()
            params = qp.parse(
                lambda n: list(request.query_params.getlist(n)) + [v for v in form.getlist(n) if isinstance(v, str)],
                lambda n: request.query_params.get(n) or (form.get(n) if isinstance(form.get(n), str) else None),
            )
            if image is not None and image.filename:
                params = replace(params, upload=service.save_upload(await read_upload(image)))
            from starlette.concurrency import run_in_threadpool

            result = await run_in_threadpool(
                service.search, spec_of(params), params.collapse, params.diverse, params.facets
            )
        except CxrSearchError as exc:
            return api_error(exc)
        return JSONResponse(result.json())

    @app.get("/api/case/{ident}")
    def api_case(ident: str) -> Any:
        try:
            point = service.point(ident)
        except CxrSearchError as exc:
            return api_error(exc, 404)
        card = make_cards([_as_hit(point)], thumb_for)[0]
        record = {
            **card.record,
            "image_url": None if card.thumb is None else f"/image/{quote(point.id)}/full.png",
            "thumb_url": card.thumb,
        }
        record.pop("rank", None)
        record.pop("score", None)
        return record

    @app.post("/api/explain")
    async def api_explain(request: Request) -> Any:
        form = await request.form()
        merged = lambda n: request.query_params.get(n) or (form.get(n) if isinstance(form.get(n), str) else None)  # noqa: E731
        try:
            params = qp.parse(lambda n: request.query_params.getlist(n), merged)
            hit = merged("hit")
            if not hit:
                raise QueryError("hit is missing: give the id of a hit (from /api/search)")
            point = service.point(hit)
            job = _start(point, params, merged("label"))
            wait = float(merged("wait") or 0)
        except (CxrSearchError, ValueError) as exc:
            return JSONResponse(
                {"error": _message(exc) if isinstance(exc, CxrSearchError) else str(exc)}, status_code=400
            )
        if wait > 0:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(jobs.wait, job, min(wait, 600.0))
        return JSONResponse(job.status(), status_code=200 if job.state in ("done", "failed") else 202)

    @app.get("/api/explain/{key}")
    def api_explain_status(key: str) -> Any:
        job = jobs.get(key)
        if job is None:
            return JSONResponse({"error": "no such explanation job"}, status_code=404)
        return job.status()

    guarded: Any = BodyLimit(app, settings.max_upload_bytes + FORM_OVERHEAD)
    guarded = HostGuard(guarded, allowed_hosts(settings.host) if hosts == "auto" else hosts)
    guarded = TokenGuard(guarded, settings.token)
    guarded = SecurityHeaders(guarded)
    guarded.app_state = app.state  # tests reach the service and the jobs here
    return guarded


def _job_key(point_id: str, params: qp.SearchParams, label: str | None, steps: int) -> str:
    from cxrsearch.serve.service import query_key

    return query_key(
        [
            ("hit", point_id),
            ("text", params.text),
            ("like", params.like),
            ("upload", params.upload),
            ("label", label if params.empty else None),
            ("steps", steps),
        ]
    )


def _as_hit(point: Any) -> Any:
    from cxrsearch.store.base import Hit

    return Hit(id=point.id, score=0.0, payload=dict(point.payload))
