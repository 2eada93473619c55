"""Identical reports collapsed: one shown hit per report text, with the others listed under it.

Open-i holds many word-for-word identical reports (mostly normal ones, "No acute cardiopulmonary
abnormality."), and every radiograph of a study carries its study's report, so a plain top ``k``
often shows the same text several times. :func:`collapse` keeps the first (best) hit of each group
of hits whose report text is identical under the key training uses for "identical reports"
(:func:`cxrsearch.text.report.normalise_report` of findings + impression, cleaned as the model
reads them), and records the others' point and study ids. Hits without report text are never merged.
Hits of exactly equal score are shown in point-id order (and a group tied at its best shows its
smallest id), so one search shows the same cases every time, whatever order the engine gave ties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cxrsearch.search.spec import MAX_K
from cxrsearch.store.base import Hit
from cxrsearch.text.report import normalise_report, report_text

COLLAPSE_FETCH = 5
"""With collapsing on, a search first fetches ``k * COLLAPSE_FETCH`` hits (at most ``MAX_K``) to fill
``k`` groups, and ``MAX_K`` once more when that was not enough (:func:`fetch_for_collapse`)."""

H = TypeVar("H", bound=Hit)


@dataclass(frozen=True)
class CollapsedHit:
    """The best ``hit`` of a group of identical reports; ``identical`` and ``identical_studies`` are
    the point ids and study ids of the group's other hits, best first (aligned, one per hit)."""

    hit: Hit
    identical: tuple[str, ...] = ()
    identical_studies: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.hit.id

    @property
    def score(self) -> float:
        return self.hit.score

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.hit.payload


def report_key(payload: Mapping[str, Any]) -> str | None:
    """The normalised findings + impression of a hit's payload; ``None`` when it has no report text."""
    text = report_text(payload.get("findings"), payload.get("impression"))
    return normalise_report(text) or None


def collapse(hits: Iterable[Hit], k: int) -> list[CollapsedHit]:
    """The first ``k`` groups of identical reports among ``hits`` (in order), each as its best hit.

    A later hit whose report matches a group already shown joins it even once ``k`` groups are
    found, so ``identical`` lists every copy among the hits given (fetch more hits than ``k`` to fill
    ``k`` groups). Report-less hits each form their own group.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    groups: list[tuple[Hit, list[Hit]]] = []
    by_key: dict[str, list[Hit]] = {}
    for hit in hits:
        key = report_key(hit.payload)
        if key is not None and key in by_key:
            by_key[key].append(hit)
            continue
        if len(groups) == k:
            continue
        others: list[Hit] = []
        groups.append((hit, others))
        if key is not None:
            by_key[key] = others
    shown = []
    for first, others in groups:
        head, rest = _head([first, *others])
        shown.append(
            CollapsedHit(head, tuple(h.id for h in rest), tuple(str(h.payload.get("study_id") or "") for h in rest))
        )
    return _ties_by_id(shown)


def uncollapsed(hits: Iterable[Hit]) -> list[CollapsedHit]:
    """Every hit as its own group (``--no-collapse``)."""
    return _ties_by_id([CollapsedHit(hit) for hit in hits])


def _head(group: list[Hit]) -> tuple[Hit, list[Hit]]:
    """The hit shown for a group (best first) and the rest, best first. Copies of one report often
    score exactly alike, and the engine orders exact ties either way: among those tied with the best,
    the smallest point id is shown, so the same search shows the same case every time."""
    tied = [h for h in group if h.score == group[0].score]
    head = min(tied, key=lambda h: h.id)
    return head, [h for h in group if h is not head]


def _ties_by_id(shown: list[CollapsedHit]) -> list[CollapsedHit]:
    """``shown`` with each run of neighbours of exactly equal score in point-id order: the engine's
    order of exact ties varies from one run to the next. Nothing else moves (an MMR order, which is
    not by score, stays as it is)."""
    out: list[CollapsedHit] = []
    start = 0
    for i in range(1, len(shown) + 1):
        if i == len(shown) or shown[i].score != shown[start].score:
            out.extend(sorted(shown[start:i], key=lambda h: h.id))
            start = i
    return out


def fetch_for_collapse(run: Callable[[int], Sequence[H]], k: int, collapse_on: bool = True) -> list[H]:
    """The hits to show ``k`` of: ``run(limit)`` searches. Collapsing off: ``run(k)``. On: ``k *
    COLLAPSE_FETCH`` hits first; when they fill fewer than ``k`` groups and came back full (normal
    reports have dozens of word-for-word copies: "no pleural effusion" filled 30 hits with 3 texts),
    ``MAX_K`` once more, so that a search asked for ``k`` shows ``k`` when the collection has them."""
    if not collapse_on:
        return list(run(k))
    limit = min(k * COLLAPSE_FETCH, MAX_K)
    hits = list(run(limit))
    if len(hits) == limit < MAX_K and len(collapse(hits, k)) < k:
        hits = list(run(MAX_K))
    return hits
