"""What the routes share: :class:`AppState` (the open service and its explanation jobs, kept on
``app.state``; each route receives it as the :data:`State` dependency) and the helpers several
routers use (reading uploads, starting an explanation, error messages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request

from cxrsearch.errors import CxrSearchError, QueryError
from cxrsearch.serve import params as qp
from cxrsearch.store.base import Hit

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.search.spec import QuerySpec
    from cxrsearch.serve.jobs import ExplainJobs, Job
    from cxrsearch.serve.service import Service
    from cxrsearch.serve.settings import ServeSettings

STATE_ATTRIBUTE = "cxrsearch"
"""The attribute of ``app.state`` holding the :class:`AppState`."""


def message(exc: CxrSearchError) -> str:
    """The error without the local path it names (the server's layout is not the browser's business)."""
    return " ".join(str(exc.message).split())


def form_text(form: Any, name: str) -> str | None:
    """A form field's value when it is text (``None`` for a missing field or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def read_params(request: Request) -> qp.SearchParams:
    """The search a request's query string asks for."""
    return qp.parse(request.query_params.getlist, request.query_params.get)


@dataclass(frozen=True)
class AppState:
    """The app's state: the open :class:`~cxrsearch.serve.service.Service` and its explanation jobs."""

    service: Service
    jobs: ExplainJobs

    @property
    def settings(self) -> ServeSettings:
        return self.service.settings

    def vocabulary(self) -> dict[str, Any]:
        service = self.service
        return {"labels": list(service.labels), "views": list(service.views), "splits": list(service.splits)}

    def spec_of(self, params: qp.SearchParams) -> QuerySpec:
        image = None if params.upload is None else self.service.upload_path(params.upload)
        return self.service.spec(image=image, **params.spec_fields())

    def thumb_for(self, hit: Any) -> tuple[str | None, str | None]:
        """A card's image URL, or why there is none."""
        payload = dict(hit.payload)
        if payload.get("kind") == "report" or not payload.get("image_path"):
            return None, "report only: no radiograph indexed"
        if not self.service.has_image(payload):
            return None, "radiograph not available on this server"
        return f"/image/{quote(hit.id)}/thumb.png", None

    async def read_upload(self, upload: Any) -> bytes:
        """An uploaded file's bytes, checked against the upload cap."""
        limit = self.settings.max_upload_bytes
        data: bytes = await upload.read(limit + 1)
        if len(data) > limit:
            raise QueryError(f"upload too large: the limit is {limit // (1024 * 1024)} MiB")
        if not data:
            raise QueryError("the uploaded file is empty")
        return data

    def start_explain(self, point: Any, params: qp.SearchParams, label: str | None) -> Job:
        """The explanation of ``point`` against the query of ``params`` (else against ``label``)."""
        payload = dict(point.payload)
        if payload.get("kind") != "report" and payload.get("image_path"):
            self.service.image_file(payload)  # only radiographs under the configured roots are read
        if params.empty and label is None:
            raise QueryError("nothing to explain against: search first (text, image or like), or pick a label")
        query: dict[str, Any] = {
            "text": params.text,
            "like": params.like,
            "image": None if params.upload is None else self.service.upload_path(params.upload),
            "label": label if params.empty else None,
        }
        return self.jobs.start(job_key(point.id, params, label, self.settings.explain_steps), point.id, query)


async def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request`` (a dependency)."""
    state: AppState = getattr(request.app.state, STATE_ATTRIBUTE)
    return state


State = Annotated[AppState, Depends(get_state)]
"""A route's parameter type for the app's :class:`AppState`."""


def links(params: qp.SearchParams) -> Callable[[dict[str, Any]], tuple[str, str]]:
    """``record -> (case page URL, more-like-this URL)``, the case URL keeping the query of ``params``."""
    context = params.query_string(only=qp.QUERY_FIELDS)

    def make(record: dict[str, Any]) -> tuple[str, str]:
        case = f"/case/{quote(record['id'])}" + (f"?{context}" if context else "")
        return case, "/?" + qp.SearchParams(like=record["id"]).query_string()

    return make


def job_key(point_id: str, params: qp.SearchParams, label: str | None, steps: int) -> str:
    """The name of the explanation job of ``point_id`` against this query."""
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


def as_hit(point: Any) -> Any:
    """A stored point as a hit (score 0), to show it as a card."""
    return Hit(id=point.id, score=0.0, payload=dict(point.payload))
