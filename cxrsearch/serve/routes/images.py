"""Images: a case's radiograph re-rendered through the project's decoder
(``GET /image/{id}/thumb.png``, ``/image/{id}/full.png``) and an explanation's overlays
(``GET /explain/{job}/{ig|attention|figure}.png``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from cxrsearch.errors import CxrSearchError, ImageError
from cxrsearch.serve.routes.state import AppState, State, message
from cxrsearch.serve.thumbs import FULL_SIDE, THUMB_SIDE

IMAGE_CACHE = "private, max-age=3600"

router = APIRouter()


def png(state: AppState, ident: str, side: int) -> Response:
    """The radiograph of case ``ident`` as a PNG of ``side`` pixels, or a plain-text error."""
    service = state.service
    try:
        (point,) = service.store.retrieve(service.collection, [ident]) or [None]
        if point is None:
            return Response("no such case\n", status_code=404, media_type="text/plain")
        data = service.render(dict(point.payload), side)
    except ImageError:
        return Response("the radiograph cannot be decoded\n", status_code=422, media_type="text/plain")
    except CxrSearchError as exc:
        return Response(message(exc) + "\n", status_code=404, media_type="text/plain")
    return Response(data, media_type="image/png", headers={"cache-control": IMAGE_CACHE})


@router.get("/image/{ident}/thumb.png")
def thumb(ident: str, state: State) -> Response:
    return png(state, ident, THUMB_SIDE)


@router.get("/image/{ident}/full.png")
def full(ident: str, state: State) -> Response:
    return png(state, ident, FULL_SIDE)


@router.get("/explain/{key}/{name}.png")
def explain_png(key: str, name: str, state: State) -> Response:
    path = state.jobs.file(key, name)
    if path is None or not path.is_file():
        return Response("no such explanation image\n", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type="image/png", headers={"cache-control": IMAGE_CACHE})
