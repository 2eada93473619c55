"""The explain API: ``POST /api/explain`` starts (or finds) the explanation of a hit, ``wait=S``
blocks up to S seconds (``explain --json`` once done); ``GET /api/explain/{job}`` is its state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cxrsearch.errors import CxrSearchError, QueryError
from cxrsearch.serve import params as qp
from cxrsearch.serve.routes.state import State, form_text, message

MAX_WAIT = 600.0
"""The longest ``wait`` honoured, in seconds."""

router = APIRouter()


@router.post("/api/explain")
async def api_explain(request: Request, state: State) -> Any:
    form = await request.form()

    def merged(name: str) -> str | None:
        return request.query_params.get(name) or form_text(form, name)

    try:
        params = qp.parse(lambda n: request.query_params.getlist(n), merged)
        hit = merged("hit")
        if not hit:
            raise QueryError("hit is missing: give the id of a hit (from /api/search)")
        point = state.service.point(hit)
        job = state.start_explain(point, params, merged("label"))
        wait = float(merged("wait") or 0)
    except (CxrSearchError, ValueError) as exc:
        return JSONResponse({"error": message(exc) if isinstance(exc, CxrSearchError) else str(exc)}, status_code=400)
    if wait > 0:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(state.jobs.wait, job, min(wait, MAX_WAIT))
    return JSONResponse(job.status(), status_code=200 if job.state in ("done", "failed") else 202)


@router.get("/api/explain/{key}")
def api_explain_status(key: str, state: State) -> Any:
    job = state.jobs.get(key)
    if job is None:
        return JSONResponse({"error": "no such explanation job"}, status_code=404)
    return job.status()
