"""Hits as records for scripts (``--json``) and short strings for people (the table, the demo)."""

from __future__ import annotations

from typing import Any

from cxrsearch.search.collapse import CollapsedHit
from cxrsearch.store.base import Hit


def hit_record(hit: Hit | CollapsedHit, rank: int) -> dict[str, Any]:
    """One hit as plain JSON (what ``cxrsearch search --json`` prints, one per hit).

    Keys: ``rank`` (1-based), ``id`` (point id), ``score`` (cosine similarity; the reciprocal-rank-
    fusion score for text queries), ``study_id``, ``image_id`` (``null`` for a report point),
    ``kind``, ``view``, ``split``, ``labels`` (predicted), ``labels_true`` (MeSH), ``probs`` (label ->
    probability), ``impression``, ``findings``, ``components`` (a hybrid text query only: each
    component's own ``rank``, ``score`` and ``weight``), ``identical`` (for a :class:`CollapsedHit`: the other
    hits with the same report text, ``[{"id", "study_id"}]``; else ``[]``) and ``identical_count``.
    """
    identical: list[dict[str, str]] = []
    if isinstance(hit, CollapsedHit):
        identical = [{"id": pid, "study_id": study} for pid, study in zip(hit.identical, hit.identical_studies)]
        hit = hit.hit
    payload = hit.payload
    return {
        "rank": rank,
        "id": hit.id,
        "score": float(hit.score),
        "study_id": payload.get("study_id"),
        "image_id": payload.get("image_id"),
        "kind": payload.get("kind"),
        "view": payload.get("view"),
        "split": payload.get("split"),
        "labels": list(payload.get("labels") or []),
        "labels_true": list(payload.get("labels_true") or []),
        "probs": dict(payload.get("probs") or {}),
        "impression": payload.get("impression"),
        "findings": payload.get("findings"),
        "identical": identical,
        "identical_count": len(identical),
        **({"components": {name: dict(parts) for name, parts in hit.components.items()}} if hit.components else {}),
    }


def labels_with_probs(payload: dict[str, Any], field: str = "labels") -> str:
    """``"cardiomegaly 0.91, pleural effusion 0.62"``: the labels of ``field`` with their predicted
    probability, most probable first (``"-"`` when there are none)."""
    probs = payload.get("probs") or {}
    labels = sorted(payload.get(field) or [], key=lambda name: -float(probs.get(name, 0.0)))
    return ", ".join(f"{name} {probs[name]:.2f}" if name in probs else name for name in labels) or "-"


def snippet(text: str | None, limit: int = 90) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters (with ``…``)."""
    flat = " ".join((text or "").split())
    if len(flat) <= limit:
        return flat or "-"
    cut = flat[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"
