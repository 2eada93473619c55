"""``explain(request, store, checkpoint) -> Explanation``: why one hit matched one query.

Steps: resolve the hit (as ``--like`` does) and the query vector (as ``search`` does), decode the
hit's radiograph (same pipeline as indexing) and rebuild its report text, then

1. one forward pass of the hit (no gradients): the explained score, and the fusion layers'
   text -> image attention rolled out over all layers (:mod:`~cxrsearch.explain.attention`);
2. Integrated Gradients on the radiograph's pixels (:mod:`~cxrsearch.explain.attribution`);
3. Layer Integrated Gradients on the report's word embeddings, merged into words
   (:mod:`~cxrsearch.explain.tokens`);
4. the statistics of each map on the original film (:mod:`~cxrsearch.explain.heatmap`).

:func:`explain` writes nothing: :func:`~cxrsearch.explain.output.write_explanation`
writes the PNGs (:mod:`~cxrsearch.explain.render`) and the JSON (the CLI and the server call it
after :func:`explain`).

A hit without a radiograph gets token attributions only; a hit without report text gets pixels
only (and no attention view, which needs text). Each such case adds a notice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import ModelError, QueryError
from cxrsearch.explain.attention import AttentionMap, attention_rollout
from cxrsearch.explain.attribution import (
    PixelAttribution,
    attribution_mode,
    default_batches,
    pixel_attributions,
    resolve_precision,
)
from cxrsearch.explain.explanation import Explanation
from cxrsearch.explain.fusion import FusionEvidence, fusion_evidence
from cxrsearch.explain.heatmap import HeatmapStats, grid_to_canvas, heatmap_stats
from cxrsearch.explain.request import ExplainRequest, build_target, resolve_hit, vector_scores
from cxrsearch.explain.target import Target
from cxrsearch.explain.tokens import TokenAttribution, token_attributions
from cxrsearch.image.decode import decode_image
from cxrsearch.index.record import image_file
from cxrsearch.search.modes import FusionWeights, bm25_params, fusion_weights, query_text
from cxrsearch.search.query import encoder_for
from cxrsearch.text.report import report_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.encode import Encoder
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.output import ImageFeatures, ModelOutput, TextFeatures
    from cxrsearch.store.base import Point, Store

REPRODUCED_MIN = 0.999
"""Below this cosine between the stored and the recomputed joint embedding, a notice is added."""


class _Stopwatch:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.last = now - self.last, now

    def done(self) -> dict[str, float]:
        return {**self.laps, "total": time.perf_counter() - self.started}


@dataclass(frozen=True)
class _Hit:
    """The hit as stored: its point, payload, report text (``""`` without one) and decoded
    radiograph (``None`` without one)."""

    point: Point
    payload: dict[str, Any]
    text: str
    decoded: DecodedImage | None


@dataclass(frozen=True)
class _HitPass:
    """The hit through the model once, without gradients.

    ``pixels`` ``[1, 1, S, S]`` and ``geometry`` / ``image_features`` (``None`` without a radiograph),
    ``text_features`` (``None`` without report text), ``out`` the fused output (batch of 1).
    """

    pixels: torch.Tensor | None
    geometry: Geometry | None
    image_features: ImageFeatures | None
    text_features: TextFeatures | None
    out: ModelOutput


@dataclass(frozen=True)
class _Maps:
    """The three views of the hit, each ``None`` where the hit lacks what it needs, with the
    statistics of the two maps on the film."""

    attention: AttentionMap | None
    attention_stats: HeatmapStats | None
    pixels: PixelAttribution | None
    pixel_stats: HeatmapStats | None
    tokens: TokenAttribution | None


def explain(
    request: ExplainRequest, store: Store, checkpoint: Checkpoint | Encoder | str | Path | None = None
) -> Explanation:
    """Explain ``request.hit`` against the request's query (see the module docstring); writes nothing.

    ``checkpoint``: the one the collection was indexed with (``None``: the one its points record).
    """
    clock = _Stopwatch()
    encoder = encoder_for(store, request.collection, checkpoint)
    if encoder.numpy or encoder.onnx:
        raise ModelError(
            "explain needs the torch model (gradients through both towers); load the checkpoint with "
            "runtime='torch' (the default of Encoder and load_checkpoint)"
        )
    point, notices = resolve_hit(store, request)
    weights = fusion_weights(encoder)
    target, query_vectors = build_target(request, encoder, store, weights)
    hit = _load_hit(point, request, store)
    notes = [*notices, *_missing_notices(hit)]
    clock.lap("load")

    passed, score = _forward(encoder, hit, target)
    reproduced = _reproduced(point.vectors.get("joint"), passed.out.joint_embedding[0].double().cpu().numpy())
    notes += _reproduced_notices(reproduced)
    clock.lap("forward")

    maps = _attribute(request, encoder, hit, passed, target, clock)
    fusion = _fusion(request, store, encoder, point, query_vectors, weights)
    notes += _fusion_notices(fusion)
    clock.lap("fusion")
    return _explanation(request, hit, passed, target, score, reproduced, maps, fusion, notes, clock.done())


def _load_hit(point: Point, request: ExplainRequest, store: Store) -> _Hit:
    """The hit's payload, report text and radiograph."""
    payload = dict(point.payload)
    text = report_text(payload.get("findings"), payload.get("impression"))
    decoded = _hit_image(payload, request, store.roots(request.collection))
    return _Hit(point, payload, text, decoded)


def _missing_notices(hit: _Hit) -> list[str]:
    """A notice per missing modality."""
    notes = []
    if hit.decoded is None:
        notes.append("this hit has no radiograph: token attributions only (no pixel or attention maps)")
    if not hit.text:
        notes.append("this hit has no report text: no token attributions and no text -> image attention")
    return notes


def _forward(encoder: Encoder, hit: _Hit, target: Target) -> tuple[_HitPass, float]:
    """The hit through the model in eval mode, without gradients, and its explained score."""
    import torch

    with attribution_mode(cast("FusionModel", encoder.model)), torch.no_grad():
        passed = _forward_hit(encoder, hit.decoded, hit.text)
        score = float(target(passed.out)[0])
    return passed, score


def _forward_hit(encoder: Encoder, decoded: DecodedImage | None, text: str) -> _HitPass:
    """Preprocess and encode the hit (caller holds eval mode and no_grad)."""
    model = cast("FusionModel", encoder.model)  # explanations need the torch model
    pixels = geometry = image_features = text_features = None
    if decoded is not None:
        pixels, geometries = encoder.prepare_images([decoded])
        geometry = geometries[0]
        image_features = model.encode_image(pixels)
    if text:
        batch = encoder.tokenize([text])
        text_features = model.encode_text(batch["input_ids"], batch["attention_mask"])
    return _HitPass(pixels, geometry, image_features, text_features, model.fuse(image_features, text_features))


def _reproduced_notices(reproduced: float | None) -> list[str]:
    """A notice when the recomputed joint embedding is not the stored one."""
    if reproduced is None or reproduced >= REPRODUCED_MIN:
        return []
    return [
        f"the hit's stored embedding differs from the one recomputed now (cosine {reproduced:.4f}): "
        "its image file or report changed since indexing, or the collection was indexed with other weights"
    ]


def _attribute(
    request: ExplainRequest, encoder: Encoder, hit: _Hit, passed: _HitPass, target: Target, clock: _Stopwatch
) -> _Maps:
    """Attention rollout, pixel and token attributions (each timed as its own stage)."""
    import torch

    model = cast("FusionModel", encoder.model)  # explanations need the torch model
    precision = resolve_precision(request.precision, torch.device(encoder.device))
    pixel_batch, token_batch = default_batches(precision, request.steps)
    if request.internal_batch_size is not None:
        pixel_batch = token_batch = request.internal_batch_size
    attention = attention_stats = pixels = pixel_stats = tokens = None
    geometry = cast("Geometry", passed.geometry)  # set with a radiograph
    if hit.decoded is not None and hit.text:
        attention = attention_rollout(passed.out)
        attention_stats = heatmap_stats(grid_to_canvas(attention.rollout, geometry.canvas_size), geometry)
    clock.lap("attention")
    if hit.decoded is not None:
        pixels = pixel_attributions(
            model,
            cast("torch.Tensor", passed.pixels),  # set with a radiograph
            target,
            text=passed.text_features,
            film_box=geometry.image_box(),
            steps=request.steps,
            baseline=request.baseline,
            internal_batch_size=pixel_batch,
            precision=precision,
        )
        pixel_stats = heatmap_stats(pixels.attributions, geometry)
    clock.lap("pixels")
    if hit.text:
        tokens = token_attributions(
            model,
            hit.text,
            target,
            image=passed.image_features,
            steps=request.steps,
            internal_batch_size=token_batch,
            precision=precision,
        )
    clock.lap("tokens")
    return _Maps(attention, attention_stats, pixels, pixel_stats, tokens)


def _fusion(
    request: ExplainRequest,
    store: Store,
    encoder: Encoder,
    point: Point,
    query_vectors: dict | None,
    weights: FusionWeights,
) -> FusionEvidence | None:
    """What the fused score of a hybrid text query was made of (``None`` for other queries)."""
    if query_vectors is None:
        return None
    return fusion_evidence(
        store,
        request.collection,
        request.mode,
        query_vectors,
        point,
        weights,
        None if request.text is None else query_text(request.text),
        bm25_params(store, request.collection, request.mode),
        tuple(encoder.labels),
    )


def _fusion_notices(fusion: FusionEvidence | None) -> list[str]:
    """What the attributions explain of a fused text query's score, when it is not its dense part."""
    if fusion is None or fusion.explained_part == "dense":
        return []
    if fusion.explained_part == "labels":  # build_target chose the label score for the same components
        return [
            "this text search ranks by " + " and ".join(fusion.components) + " (no dense list in its fusion): "
            "the token and pixel attributions explain the label score, the hit's predicted probabilities of "
            "the query's labels; BM25's part is in the fusion table"
        ]
    return [
        "this text search ranks by " + " and ".join(fusion.components) + " (no dense list in its fusion): the "
        "token and pixel attributions explain the model's similarity of the query to the hit, not its rank"
    ]


def _explanation(
    request: ExplainRequest,
    hit: _Hit,
    passed: _HitPass,
    target: Target,
    score: float,
    reproduced: float | None,
    maps: _Maps,
    fusion: FusionEvidence | None,
    notes: list[str],
    timing: dict[str, float],
) -> Explanation:
    """The :class:`Explanation` of the computed parts (no files yet)."""
    return Explanation(
        hit=_hit_facts(hit),
        query={
            "mode": request.mode,
            "text": request.text,
            "image": None if request.image is None else str(request.image),
            "like": request.like,
            "label": target.label,
        },
        target=target.describe(),
        score=score,
        probability=float(1.0 / (1.0 + np.exp(-score))) if target.kind == "label" else None,
        vector_scores=vector_scores(target, hit.point),
        reproduced=reproduced,
        pixels=maps.pixels,
        pixel_stats=maps.pixel_stats,
        attention=maps.attention,
        attention_stats=maps.attention_stats,
        tokens=maps.tokens,
        fusion=fusion,
        notices=tuple(notes),
        timing=timing,
        top_k=request.top_k,
        film=hit.decoded,
        geometry=passed.geometry,
    )


def _hit_facts(hit: _Hit) -> dict[str, Any]:
    """``Explanation.hit``: the hit's ids and facts."""
    payload, decoded = hit.payload, hit.decoded
    return {
        "id": hit.point.id,
        "study_id": payload.get("study_id"),
        "image_id": payload.get("image_id"),
        "kind": payload.get("kind"),
        "view": payload.get("view"),
        "labels": list(payload.get("labels") or []),
        "image_path": payload.get("image_path"),
        "original_size": None if decoded is None else [decoded.height, decoded.width],
    }


def _reproduced(stored: Any, joint: np.ndarray) -> float | None:
    """Cosine of the stored and the recomputed joint embedding (``None`` if nothing is stored)."""
    if stored is None:
        return None
    vector = np.asarray(stored, dtype=np.float64)
    return float(vector @ joint / max(float(np.linalg.norm(vector) * np.linalg.norm(joint)), 1e-12))


def _hit_image(payload: dict[str, Any], request: ExplainRequest, roots: dict[str, str]) -> DecodedImage | None:
    """The hit's decoded radiograph, ``None`` for a report point; QueryError if its file is gone."""
    if payload.get("kind") == "report":
        return None
    path = image_file(payload, roots, request.images, where=request.collection)
    if path is None:
        return None
    if not path.is_file():
        raise QueryError(
            f"the radiograph of hit {request.hit} is no longer at {path} (moved since indexing?)",
            path=request.collection,
        )
    return decode_image(path)
