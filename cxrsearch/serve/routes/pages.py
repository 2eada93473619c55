"""The server-rendered pages: ``GET /`` (the search form, hits and facets), ``POST /search`` (the
form with an upload, sent on to a bookmarkable ``GET /?...``), ``GET /case/{id}`` (one case, its
explanation when there is one) and ``POST /case/{id}/explain`` (starts the explanation)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cxrsearch.errors import CxrSearchError
from cxrsearch.serve import params as qp
from cxrsearch.serve.routes.state import AppState, State, as_hit, form_text, job_key, links, message, read_params
from cxrsearch.serve.view import make_cards, render, word_spans

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.serve.service import SearchResult

router = APIRouter()


def search_page(
    state: AppState, params: qp.SearchParams, error: str | None, result: SearchResult | None, status: int = 200
) -> HTMLResponse:
    """The search page: the form filled from ``params``, ``error`` or the hits of ``result``."""
    cards = [] if result is None else make_cards(result.hits, state.thumb_for, links(params))
    html = render(
        "search.html",
        params=params,
        error=error,
        result=result,
        cards=cards,
        vocabulary=state.vocabulary(),
        collection=state.service.collection,
        upload_name=params.upload,
    )
    return HTMLResponse(html, status_code=status)


def form_params(form: Any) -> qp.SearchParams:
    """The search a submitted form asks for."""
    return qp.parse(form.getlist, lambda name: form_text(form, name))


@router.get("/", response_class=HTMLResponse)
def index(request: Request, state: State) -> HTMLResponse:
    try:
        params = read_params(request)
    except CxrSearchError as exc:
        return search_page(state, qp.SearchParams(), message(exc), None, 400)
    if params.empty:
        return search_page(state, params, None, None)
    try:
        result = state.service.search(state.spec_of(params), params.collapse, params.diverse, facets=True)
    except CxrSearchError as exc:
        return search_page(state, params, message(exc), None, 400)
    return search_page(state, params, None, result)


@router.post("/search")
async def search_form(request: Request, state: State) -> Response:
    form = await request.form()
    try:
        params = form_params(form)
        upload = form.get("image")
        if upload is not None and not isinstance(upload, str) and upload.filename:
            params = replace(params, upload=state.service.save_upload(await state.read_upload(upload)))
    except CxrSearchError as exc:
        return search_page(state, qp.SearchParams(), message(exc), None, 400)
    return RedirectResponse("/?" + params.query_string(), status_code=303)


@router.get("/case/{ident}", response_class=HTMLResponse)
def case_page(ident: str, request: Request, state: State) -> HTMLResponse:
    service, steps = state.service, state.settings.explain_steps
    try:
        params = read_params(request)
        point = service.point(ident)
    except CxrSearchError as exc:
        html = render("error.html", title="Case not found", error=message(exc))
        return HTMLResponse(html, status_code=404)
    record = make_cards([as_hit(point)], state.thumb_for)[0]
    label_target = request.query_params.get("explain_label") or None
    job = state.jobs.get(job_key(point.id, params, label_target, steps))
    spans = None
    if job is not None and job.result is not None and job.result.tokens is not None:
        spans = word_spans(job.result.tokens.text, job.result.tokens.words)
    html = render(
        "case.html",
        card=record,
        payload=dict(point.payload),
        image_url=f"/image/{quote(point.id)}/full.png" if record.thumb else None,
        params=params,
        job=job,
        spans=spans,
        label_target=label_target,
        collection=service.collection,
        query_string=params.query_string(only=qp.QUERY_FIELDS),
        back="/?" + params.query_string() if not params.empty else "/",
        like_url="/?" + qp.SearchParams(like=point.id).query_string(),
        steps=steps,
    )
    return HTMLResponse(html)


@router.post("/case/{ident}/explain")
async def explain_form(ident: str, request: Request, state: State) -> Response:
    form = await request.form()
    try:
        params = form_params(form)
        label = form_text(form, "explain_label")
        point = state.service.point(ident)
        state.start_explain(point, params, label or None)
    except CxrSearchError as exc:
        return HTMLResponse(render("error.html", title="Cannot explain", error=message(exc)), status_code=400)
    extra = {"explain_label": label} if label and params.empty else {}
    return RedirectResponse(
        f"/case/{quote(point.id)}?" + params.query_string(only=qp.QUERY_FIELDS, **extra), status_code=303
    )
