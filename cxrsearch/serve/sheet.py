"""The cards of a search, or one explanation, as **one self-contained HTML file** (``search --html``,
``explain --html``): the radiographs rendered through the project's decoder and embedded as
``data:`` URIs, the stylesheet inlined, no script, no link to anything outside the file. Hand it to
students; it opens in any browser without a server.

    html = search_sheet(shown, "enlarged heart; labels all of cardiomegaly", image_roots=roots)
    write_search_sheet(Path("teaching.html"), shown, title, image_roots=roots)
    write_explain_sheet(Path("why.html"), explanation, image_roots=roots)

``image_roots``: the folders radiographs may be read from (:func:`~cxrsearch.serve.files.collection_image_roots`);
``None``: absolute payload paths are read as stored (the CLI user's own files) and relative ones
are shown as not available.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import CxrSearchError, QueryError
from cxrsearch.serve.files import resolve_image
from cxrsearch.serve.thumbs import THUMB_SIDE, render_file
from cxrsearch.serve.view import make_cards, render, stylesheet, word_spans

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.explain.explanation import Explanation

SHEET_SIDE = 640
"""Longest side of a film embedded in a sheet (students look at films: larger than a card's thumbnail)."""
OVERLAY_SIDE = 1024


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_path(payload: Mapping[str, Any], roots: Sequence[Path] | None) -> Path | None:
    if roots is not None:
        return resolve_image(payload, roots)
    raw = payload.get("image_path")
    if payload.get("kind") == "report" or not raw:
        return None
    path = Path(str(raw))
    if not path.is_absolute():
        raise QueryError("the radiograph path is relative to an images folder that was not given")
    if not path.is_file():
        raise QueryError("the radiograph is no longer there")
    return path


def embedded_film(payload: Mapping[str, Any], roots: Sequence[Path] | None, side: int) -> tuple[str | None, str | None]:
    """``(data URI, None)`` for a point's radiograph, or ``(None, why not)``."""
    if payload.get("kind") == "report" or not payload.get("image_path"):
        return None, "report only: no radiograph indexed"
    try:
        path = _image_path(payload, roots)
        if path is None:
            return None, "report only: no radiograph indexed"
        return data_uri(render_file(path, side)), None
    except CxrSearchError as exc:
        return None, f"radiograph not available ({exc.message})"


def search_sheet(
    hits: Sequence[Any],
    title: str,
    image_roots: Sequence[Path] | None = None,
    facets: Mapping[str, int] | None = None,
    total: int | None = None,
    side: int = SHEET_SIDE,
) -> str:
    """The hits (``Hit`` or ``CollapsedHit``, best first, as ``search`` / ``collapse`` return them)
    as one self-contained HTML page: the same cards as ``cxrsearch serve``, films embedded.
    ``facets`` (label -> count) and ``total`` (matching cases) add the facet list."""
    cards = make_cards(hits, lambda hit: embedded_film(dict(hit.payload), image_roots, side))
    return render(
        "sheet.html",
        title=title,
        cards=cards,
        facets=facets,
        total=total,
        inline_css=stylesheet(),
        made=_now(),
        home_url="#",
    )


def explain_sheet(explanation: Explanation, image_roots: Sequence[Path] | None = None, side: int = OVERLAY_SIDE) -> str:
    """One explanation (``explain``'s result, with its PNGs written) as a self-contained HTML page:
    the film, the Integrated Gradients and attention overlays, the report coloured word by word,
    the top words and the scores."""
    hit = explanation.hit
    film, note = embedded_film(hit, image_roots, side)
    overlays = {}
    for key in ("ig_overlay", "attention_overlay"):
        path = explanation.files.get(key)
        if path is not None and Path(path).is_file():
            overlays[key] = data_uri(_scaled_png(Path(path), side))
    spans = None if explanation.tokens is None else word_spans(explanation.tokens.text, explanation.tokens.words)
    return render(
        "sheet_explain.html",
        x=explanation,
        hit=hit,
        film=film,
        note=note,
        overlays=overlays,
        spans=spans,
        inline_css=stylesheet(),
        made=_now(),
        home_url="#",
        query=_query_words(explanation.query),
    )


def write_search_sheet(
    path: Path,
    hits: Sequence[Any],
    title: str,
    image_roots: Sequence[Path] | None = None,
    facets: Mapping[str, int] | None = None,
    total: int | None = None,
) -> Path:
    """:func:`search_sheet` written to ``path`` (UTF-8); returns ``path``."""
    return _write(path, search_sheet(hits, title, image_roots, facets, total))


def write_explain_sheet(path: Path, explanation: Explanation, image_roots: Sequence[Path] | None = None) -> Path:
    """:func:`explain_sheet` written to ``path`` (UTF-8); returns ``path``."""
    return _write(path, explain_sheet(explanation, image_roots))


def _write(path: Path, html: str) -> Path:
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise QueryError(f"cannot write the HTML file ({exc.strerror or exc})", path=path) from None
    return path


def _scaled_png(path: Path, side: int) -> bytes:
    """A PNG this program wrote (an overlay), scaled down to ``side``."""
    import io

    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
        if max(image.size) > side:
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="PNG")
    return out.getvalue()


def _query_words(query: Mapping[str, Any]) -> str:
    mode = query.get("mode")
    if mode == "label":
        return f"why label {query.get('label')} was predicted"
    if mode == "like":
        return f"cases like {query.get('like')}"
    parts = []
    if query.get("text"):
        parts.append(f"text \u201c{query['text']}\u201d")
    if query.get("image"):
        parts.append(f"image {Path(str(query['image'])).name}")
    return " + ".join(parts)


def _now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


__all__ = ["THUMB_SIDE", "explain_sheet", "search_sheet", "write_explain_sheet", "write_search_sheet"]
