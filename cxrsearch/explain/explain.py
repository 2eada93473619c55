"""``explain(request, store, checkpoint) -> Explanation``: why one hit matched one query.

Steps: resolve the hit (as ``--like`` does) and the query vector (as ``search`` does), decode the
hit's radiograph (same pipeline as indexing) and rebuild its report text, then

1. one forward pass of the hit (no gradients): the explained score, and the fusion layers'
   text -> image attention rolled out over all layers (:mod:`~cxrsearch.explain.attention`);
2. Integrated Gradients on the radiograph's pixels (:mod:`~cxrsearch.explain.attribution`);
3. Layer Integrated Gradients on the report's word embeddings, merged into words
   (:mod:`~cxrsearch.explain.tokens`);
4. maps back onto the original film (:mod:`~cxrsearch.explain.heatmap`) and PNGs
   (:mod:`~cxrsearch.explain.render`).

A hit without a radiograph gets token attributions only; a hit without report text gets pixels
only (and no attention view, which needs text). Each such case adds a notice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import QueryError
from cxrsearch.explain.explanation import Explanation
from cxrsearch.explain.fusion import fusion_evidence
from cxrsearch.explain.request import ExplainRequest, build_target, resolve_hit, vector_scores
from cxrsearch.index.record import image_file
from cxrsearch.search.modes import bm25_params, fusion_weights, query_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.encode import Encoder
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.output import ImageFeatures, ModelOutput, TextFeatures
    from cxrsearch.store.base import Store

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


def explain(
    request: ExplainRequest, store: Store, checkpoint: Checkpoint | Encoder | str | Path | None = None
) -> Explanation:
    """Explain ``request.hit`` against the request's query (see the module docstring).

    ``checkpoint``: the one the collection was indexed with (``None``: the one its points record).
    """
    import torch

    from cxrsearch.explain.attribution import attribution_mode
    from cxrsearch.explain.output import write_json, write_outputs
    from cxrsearch.search.query import encoder_for
    from cxrsearch.text.report import report_text

    clock = _Stopwatch()
    encoder = encoder_for(store, request.collection, checkpoint)
    model = cast("FusionModel", encoder.model)  # explanations need the torch model
    point, notices = resolve_hit(store, request)
    target, query_vectors = build_target(request, encoder, store)
    payload = dict(point.payload)
    text = report_text(payload.get("findings"), payload.get("impression"))
    decoded = _hit_image(payload, request, store.roots(request.collection))
    notes = list(notices)
    if decoded is None:
        notes.append("this hit has no radiograph: token attributions only (no pixel or attention maps)")
    if not text:
        notes.append("this hit has no report text: no token attributions and no text -> image attention")
    clock.lap("load")

    with attribution_mode(model), torch.no_grad():
        hit = _forward_hit(encoder, decoded, text)
        score = float(target(hit.out)[0])
    reproduced = _reproduced(point.vectors.get("joint"), hit.out.joint_embedding[0].double().cpu().numpy())
    if reproduced is not None and reproduced < REPRODUCED_MIN:
        notes.append(
            f"the hit's stored embedding differs from the one recomputed now (cosine {reproduced:.4f}): "
            "its image file or report changed since indexing, or the collection was indexed with other weights"
        )
    clock.lap("forward")

    from cxrsearch.explain.attribution import default_batches, resolve_precision

    precision = resolve_precision(request.precision, torch.device(encoder.device))
    pixel_batch, token_batch = default_batches(precision, request.steps)
    if request.internal_batch_size is not None:
        pixel_batch = token_batch = request.internal_batch_size
    attention = pixel_result = token_result = None
    if decoded is not None and text:
        from cxrsearch.explain.attention import attention_rollout

        attention = attention_rollout(hit.out)
    clock.lap("attention")
    if decoded is not None:
        from cxrsearch.explain.attribution import pixel_attributions

        pixel_result = pixel_attributions(
            model,
            cast("torch.Tensor", hit.pixels),  # set with a radiograph
            target,
            text=hit.text_features,
            film_box=cast("Geometry", hit.geometry).image_box(),
            steps=request.steps,
            baseline=request.baseline,
            internal_batch_size=pixel_batch,
            precision=precision,
        )
    clock.lap("pixels")
    if text:
        from cxrsearch.explain.tokens import token_attributions

        token_result = token_attributions(
            model,
            text,
            target,
            image=hit.image_features,
            steps=request.steps,
            internal_batch_size=token_batch,
            precision=precision,
        )
    clock.lap("tokens")
    fusion = None
    if query_vectors is not None:
        fusion = fusion_evidence(
            store,
            request.collection,
            request.mode,
            query_vectors,
            point,
            fusion_weights(encoder),
            None if request.text is None else query_text(request.text),
            bm25_params(store, request.collection, request.mode),
            tuple(encoder.labels),
        )
    clock.lap("fusion")

    key = _file_key(payload, point.id)
    folder = request.out_dir if request.out_dir is not None else new_output_dir(key)
    title = f"{key} | query: {request.describe_query()} | {target.describe()} = {score:.3f}"
    files, pixel_stats, attention_stats = write_outputs(
        folder, key, title, decoded, hit.geometry, pixel_result, attention
    )
    files["json"] = folder / f"{key}.json"
    clock.lap("render")
    explanation = Explanation(
        hit={
            "id": point.id,
            "study_id": payload.get("study_id"),
            "image_id": payload.get("image_id"),
            "kind": payload.get("kind"),
            "view": payload.get("view"),
            "labels": list(payload.get("labels") or []),
            "image_path": payload.get("image_path"),
            "original_size": None if decoded is None else [decoded.height, decoded.width],
        },
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
        vector_scores=vector_scores(target, point),
        reproduced=reproduced,
        pixels=pixel_result,
        pixel_stats=pixel_stats,
        attention=attention,
        attention_stats=attention_stats,
        tokens=token_result,
        fusion=fusion,
        files=files,
        notices=tuple(notes),
        timing=clock.done(),
        top_k=request.top_k,
    )
    write_json(files["json"], explanation.to_dict())
    return explanation


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
    from cxrsearch.image.decode import decode_image

    return decode_image(path)


def _file_key(payload: dict[str, Any], point_id: str) -> str:
    """A filename-safe name for the hit: its image id, else its study id, else the point id."""
    raw = str(payload.get("image_id") or payload.get("study_id") or point_id)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in raw)


def new_output_dir(key: str) -> Path:
    """A folder that does not exist yet: ``<output dir>/explain/<YYYYmmdd-HHMMSS>-<key>[-n]``."""
    from cxrsearch import paths

    base = paths.output_dir() / "explain" / f"{time.strftime('%Y%m%d-%H%M%S')}-{key}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder
