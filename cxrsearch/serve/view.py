"""What the templates show, computed once for the pages and the static sheets: hits as cards,
a report's words coloured by attribution, and the Jinja environment (autoescaped; templates and
CSS ship in the package)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cxrsearch.search.results import hit_record

LEVELS = 5
"""Colour steps of a word's attribution (each sign): CSS classes ``pos1..pos5`` / ``neg1..neg5``."""


@dataclass(frozen=True)
class Card:
    """One hit as a card: ``record`` is ``search --json``'s object for it; ``thumb`` the image
    source (a URL or a ``data:`` URI; ``None``: report-only, or the file is not available);
    ``note`` says why there is no image."""

    record: dict[str, Any]
    thumb: str | None
    note: str | None
    predicted: list[tuple[str, float | None]]
    case_url: str | None = None
    like_url: str | None = None


def predicted_labels(record: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """Predicted labels with their probability, most probable first."""
    probs = record.get("probs") or {}
    labels = sorted(record.get("labels") or [], key=lambda name: -float(probs.get(name, 0.0)))
    return [(name, None if name not in probs else float(probs[name])) for name in labels]


def make_cards(
    hits: Sequence[Any],
    thumb: Callable[[Any], tuple[str | None, str | None]],
    links: Callable[[dict[str, Any]], tuple[str | None, str | None]] | None = None,
) -> list[Card]:
    """Cards for ``hits`` (collapsed or plain), ranked from 1; ``thumb(hit) -> (src, note)``,
    ``links(record) -> (case url, more-like-this url)``."""
    cards = []
    for rank, hit in enumerate(hits, start=1):
        record = hit_record(hit, rank)
        src, note = thumb(hit)
        case_url, like_url = links(record) if links is not None else (None, None)
        cards.append(Card(record, src, note, predicted_labels(record), case_url, like_url))
    return cards


@dataclass(frozen=True)
class Span:
    """A stretch of report text: ``css`` is ``""`` between words, else ``pos<n>``/``neg<n>``."""

    text: str
    css: str
    title: str


def word_spans(text: str, words: Sequence[Any]) -> list[Span]:
    """``text`` cut into the attributed words (``word``, ``start``, ``end``, ``attribution``, as
    objects or dicts) and what lies between them, each word's colour step relative to the largest."""

    def get(word: Any, name: str) -> Any:
        return word[name] if isinstance(word, Mapping) else getattr(word, name)

    limit = max((abs(float(get(w, "attribution"))) for w in words), default=0.0)
    spans: list[Span] = []
    at = 0
    for word in sorted(words, key=lambda w: int(get(w, "start"))):
        start, end, value = int(get(word, "start")), int(get(word, "end")), float(get(word, "attribution"))
        if start < at or end > len(text):
            continue
        if start > at:
            spans.append(Span(text[at:start], "", ""))
        step = 0 if limit == 0 else min(LEVELS, max(1, int(round(LEVELS * abs(value) / limit))))
        css = "" if step == 0 or abs(value) < 1e-12 else f"{'pos' if value > 0 else 'neg'}{step}"
        spans.append(Span(text[start:end], css, f"{value:+.4f}"))
        at = end
    if at < len(text):
        spans.append(Span(text[at:], "", ""))
    return spans


def stylesheet() -> str:
    """The app's CSS (shipped in the package)."""
    return resources.files("cxrsearch.serve").joinpath("static/style.css").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The Jinja environment over the packaged templates (HTML autoescaped)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cxrsearch.serve", "templates"),
        autoescape=jinja2.select_autoescape(("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["prob"] = lambda value: "" if value is None else f"{value:.2f}"
    env.filters["score"] = lambda value: f"{float(value):.4f}"
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
