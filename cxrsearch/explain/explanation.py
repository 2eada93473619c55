"""The result of ``explain``: :class:`Explanation`, and its JSON form (what ``--json`` prints)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch.explain.heatmap import HeatmapStats
from cxrsearch.explain.tokens import WordAttribution

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.explain.attention import AttentionMap
    from cxrsearch.explain.attribution import PixelAttribution
    from cxrsearch.explain.fusion import FusionEvidence
    from cxrsearch.explain.tokens import TokenAttribution
    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry


@dataclass(frozen=True)
class Explanation:
    """Everything ``explain`` found. ``to_dict()`` is the ``--json`` output (no large arrays).

    Attributes:
        hit: the hit's ids and facts (``id``, ``study_id``, ``image_id``, ``kind``, ``view``,
            ``labels``, ``image_path``, ``original_size`` ``[H, W]`` or ``None``).
        query: ``mode``, ``text``, ``image``, ``like``, ``label`` as asked.
        target: what the score is, in words.
        score: the explained score of the hit as it is (cosine, or logit).
        probability: ``sigmoid(score)`` for a label target, else ``None``.
        vector_scores: cosine of the query vector with the hit's stored vectors (search's view).
        reproduced: cosine of the hit's stored and recomputed joint embeddings (1.0 = identical).
        pixels: Integrated Gradients on the radiograph (``None`` without one); its ``attributions``
            ``[S, S]`` stay in memory and are summarised in ``pixel_stats``.
        pixel_stats / attention_stats: :class:`HeatmapStats` of each map (``None`` when absent).
        attention: the text -> image attention rollout (``None`` without image or text).
        tokens: token attributions for the hit's report (``None`` without report text).
        fusion: for a fused (hybrid text) query, what the fused score was made of: each component's
            rank, score, weight and evidence (:mod:`~cxrsearch.explain.fusion`); the attributions
            above explain its dense part. ``None`` for single-vector queries.
        files: name -> path of every file written (``figure``, ``ig_overlay``,
            ``attention_overlay``, ``json``); empty until the explanation is written.
        notices: things the user should know (a missing modality, a choice made for them).
        timing: seconds per stage and ``total``.
        top_k: how many words :meth:`top_words` lists.
        film / geometry: the decoded radiograph and how it was fitted onto the model canvas, what
            :func:`~cxrsearch.explain.output.write_explanation` draws the maps on (``None`` without
            a radiograph; ``film`` is ``None`` again once written). Not part of ``to_dict()``.
    """

    hit: dict[str, Any]
    query: dict[str, Any]
    target: str
    score: float
    probability: float | None
    vector_scores: dict[str, float]
    reproduced: float | None
    pixels: PixelAttribution | None
    pixel_stats: HeatmapStats | None
    attention: AttentionMap | None
    attention_stats: HeatmapStats | None
    tokens: TokenAttribution | None
    fusion: FusionEvidence | None = None
    files: dict[str, Path] = field(default_factory=dict)
    notices: tuple[str, ...] = ()
    timing: dict[str, float] = field(default_factory=dict)
    top_k: int = 10
    film: DecodedImage | None = field(default=None, repr=False, compare=False)
    geometry: Geometry | None = field(default=None, repr=False, compare=False)

    def top_words(self) -> tuple[WordAttribution, ...]:
        return () if self.tokens is None else self.tokens.top_words(self.top_k)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: scores, top words, heatmap statistics, files, convergence deltas, timing."""
        return {
            "hit": self.hit,
            "query": self.query,
            "target": self.target,
            "score": self.score,
            "probability": self.probability,
            "vector_scores": self.vector_scores,
            "reproduced": self.reproduced,
            "top_words": [_word(w) for w in self.top_words()],
            "pixels": None if self.pixels is None else _pixels(self.pixels, self.pixel_stats),
            "attention": None if self.attention is None else _attention(self.attention, self.attention_stats),
            "tokens": None if self.tokens is None else _tokens(self.tokens),
            "fusion": None if self.fusion is None else self.fusion.to_dict(),
            "files": {k: str(v) for k, v in self.files.items()},
            "notices": list(self.notices),
            "timing": dict(self.timing),
        }


def _pixels(p: PixelAttribution, stats: HeatmapStats | None) -> dict[str, Any]:
    return {
        "method": "integrated_gradients",
        "baseline": p.baseline,
        "steps": p.steps,
        "precision": p.precision,
        "internal_batch_size": p.internal_batch_size,
        "score": p.score,
        "baseline_score": p.baseline_score,
        "attribution_sum": p.score - p.baseline_score + p.delta,
        "convergence_delta": p.delta,
        "relative_delta": p.relative_delta if np.isfinite(p.relative_delta) else None,
        "stats": _stats(stats),
    }


def _attention(a: AttentionMap, stats: HeatmapStats | None) -> dict[str, Any]:
    return {
        "method": "attention_rollout",
        "kind": "attention (not attribution)",
        "layers": len(a.per_layer),
        "heads": a.heads,
        "text_tokens": a.text_tokens,
        "grid": list(a.grid),
        "stats": _stats(stats),
    }


def _tokens(t: TokenAttribution) -> dict[str, Any]:
    return {
        "method": "layer_integrated_gradients",
        "baseline": "pad tokens",
        "steps": t.steps,
        "precision": t.precision,
        "internal_batch_size": t.internal_batch_size,
        "score": t.score,
        "baseline_score": t.baseline_score,
        "convergence_delta": t.delta,
        "truncated": t.truncated,
        "words": [_word(w) for w in t.words],
    }


def _stats(stats: HeatmapStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    values = dataclasses.asdict(stats)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _word(word: WordAttribution) -> dict[str, Any]:
    return {
        "word": word.word,
        "attribution": word.attribution,
        "start": word.start,
        "end": word.end,
        "pieces": list(word.pieces),
    }
