"""The search API, the JSON the CLI prints: ``GET /api/info``, ``GET|POST /api/search``
(``search --json``; POST may carry the query image; the search's notices, which the CLI prints to
stderr, travel in the ``X-Cxrsearch-Notices`` header) and ``GET /api/case/{id}``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse

from cxrsearch.errors import CxrSearchError
from cxrsearch.serve import params as qp
from cxrsearch.serve.registry import notices_header
from cxrsearch.serve.routes.state import State, as_hit, form_text, message, read_params
from cxrsearch.serve.view import make_cards

router = APIRouter()


def api_error(exc: CxrSearchError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message(exc)}, status_code=status)


@router.get("/api/info")
def api_info(state: State) -> dict[str, Any]:
    service = state.service
    return {"collection": service.collection, "points": service.store.count(service.collection), **state.vocabulary()}


@router.get("/api/search")
def api_search(request: Request, state: State) -> Any:
    try:
        params = read_params(request)
        result = state.service.search(state.spec_of(params), params.collapse, params.diverse, params.facets)
    except CxrSearchError as exc:
        return api_error(exc)
    return JSONResponse(result.json(), headers=notices_header(result.notices))


@router.post("/api/search")
async def api_search_upload(request: Request, state: State, image: UploadFile | None = File(None)) -> Any:
    service = state.service
    try:
        form = await request.form()
        params = qp.parse(
            lambda n: list(request.query_params.getlist(n)) + [v for v in form.getlist(n) if isinstance(v, str)],
            lambda n: request.query_params.get(n) or form_text(form, n),
        )
        if image is not None and image.filename:
            params = replace(params, upload=service.save_upload(await state.read_upload(image)))
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(
            service.search, state.spec_of(params), params.collapse, params.diverse, params.facets
        )
    except CxrSearchError as exc:
        return api_error(exc)
    return JSONResponse(result.json(), headers=notices_header(result.notices))


@router.get("/api/case/{ident}")
def api_case(ident: str, state: State) -> Any:
    try:
        point = state.service.point(ident)
    except CxrSearchError as exc:
        return api_error(exc, 404)
    card = make_cards([as_hit(point)], state.thumb_for)[0]
    record = {
        **card.record,
        "image_url": None if card.thumb is None else f"/image/{quote(point.id)}/full.png",
        "thumb_url": card.thumb,
    }
    record.pop("rank", None)
    record.pop("score", None)
    return record
