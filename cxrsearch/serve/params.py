"""Query parameters -> the search or explanation they ask for, named as the CLI's options
(``text``, ``like``, ``label``, ``any_label``, ``not_label``, ``view``, ``split``, ``truth``, ``k``,
``collapse``, ``diverse``, ``facets``; ``upload``: an uploaded image's name). Shared by the pages
and ``/api/``, so both read a request the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cxrsearch.errors import QueryError

LIST_FIELDS = ("label", "any_label", "not_label")
SCALAR_FIELDS = ("text", "like", "upload", "view", "split", "truth", "k", "collapse", "diverse", "facets")
QUERY_FIELDS = ("text", "like", "upload")
"""The fields naming the query itself (what a case page passes on to "explain this match")."""
TRUE = ("1", "true", "on", "yes")
FALSE = ("0", "false", "off", "no")


@dataclass(frozen=True)
class SearchParams:
    """A search as the browser or a script sent it; strings as given, empty ones dropped."""

    text: str | None = None
    like: str | None = None
    upload: str | None = None
    label: tuple[str, ...] = field(default_factory=tuple)
    any_label: tuple[str, ...] = field(default_factory=tuple)
    not_label: tuple[str, ...] = field(default_factory=tuple)
    view: str | None = None
    split: str | None = None
    truth: bool = False
    k: int = 10
    collapse: bool = True
    diverse: float | None = None
    facets: bool = False

    @property
    def empty(self) -> bool:
        return self.text is None and self.like is None and self.upload is None

    def spec_fields(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~cxrsearch.search.spec.QuerySpec` (without ``image``)."""
        return dict(
            text=self.text,
            like=self.like,
            all_labels=self.label,
            any_labels=self.any_label,
            not_labels=self.not_label,
            view=self.view,
            split=self.split,
            truth=self.truth,
            k=self.k,
        )

    def items(self, only: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """The non-default fields as query-string pairs (``only``: these fields)."""
        out: list[tuple[str, str]] = []
        for name in LIST_FIELDS + SCALAR_FIELDS:
            if only is not None and name not in only:
                continue
            value = getattr(self, name)
            if name in LIST_FIELDS:
                out += [(name, v) for v in value]
            elif name in ("truth", "facets"):
                if value:
                    out.append((name, "1"))
            elif name == "collapse":
                if not value:
                    out.append((name, "0"))
            elif name == "k":
                if value != 10:
                    out.append((name, str(value)))
            elif value is not None:
                out.append((name, str(value)))
        return out

    def query_string(self, only: Sequence[str] | None = None, **extra: str) -> str:
        return urlencode(self.items(only) + [(k, v) for k, v in extra.items()])


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    low = value.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise QueryError(f"{name} must be 1 or 0 (true/false), got {value!r}")


def parse(get_list: Any, get: Any) -> SearchParams:
    """:class:`SearchParams` from a multi-dict's ``getlist`` and ``get`` (query string or form)."""

    def text(name: str) -> str | None:
        value = get(name)
        if value is None or not isinstance(value, str):
            return None
        value = value.strip()
        return value or None

    lists = {name: tuple(v.strip() for v in get_list(name) if isinstance(v, str) and v.strip()) for name in LIST_FIELDS}
    k_raw = text("k")
    try:
        k = 10 if k_raw is None else int(k_raw)
    except ValueError:
        raise QueryError(f"k must be an integer, got {k_raw!r}") from None
    diverse_raw = text("diverse")
    try:
        diverse = None if diverse_raw is None else float(diverse_raw)
    except ValueError:
        raise QueryError(f"diverse must be a number from 0 to 1, got {diverse_raw!r}") from None
    if diverse is not None and not 0.0 <= diverse <= 1.0:
        raise QueryError(f"diverse must be from 0 to 1, got {diverse_raw}")
    return SearchParams(
        text=text("text"),
        like=text("like"),
        upload=text("upload"),
        view=text("view"),
        split=text("split"),
        truth=_flag(text("truth"), "truth", False),
        k=k,
        collapse=_flag(text("collapse"), "collapse", True),
        diverse=diverse,
        facets=_flag(text("facets"), "facets", False),
        **lists,
    )


def from_mapping(values: Mapping[str, Any]) -> SearchParams:
    """:class:`SearchParams` from a plain mapping (lists for the repeatable fields)."""

    def get_list(name: str) -> list[str]:
        value = values.get(name) or []
        return [value] if isinstance(value, str) else list(value)

    return parse(get_list, lambda name: None if values.get(name) is None else str(values.get(name)))
