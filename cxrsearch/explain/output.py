"""The files an explanation writes into its output folder (``<key>`` is the hit's image or study id).

=============================  ==========================================================
``<key>_explain.png``          side by side: the radiograph, the Integrated Gradients
                               overlay, the attention overlay; colour bars; a title naming
                               the hit, the query and the score
``<key>_ig.png``               the IG overlay alone, at the radiograph's original size
``<key>_attention.png``        the attention overlay alone, at the original size
``<key>.json``                 the ``--json`` output
=============================  ==========================================================
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch.errors import QueryError
from cxrsearch.explain.heatmap import HeatmapStats, grid_to_canvas, heatmap_stats, to_original

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.explain.attention import AttentionMap
    from cxrsearch.explain.attribution import PixelAttribution
    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry


def write_outputs(
    folder: Path,
    key: str,
    title: str,
    decoded: DecodedImage | None,
    geometry: Geometry | None,
    pixels: PixelAttribution | None,
    attention: AttentionMap | None,
) -> tuple[dict[str, Path], HeatmapStats | None, HeatmapStats | None]:
    """Write the PNGs (nothing when there is no radiograph); returns (files, IG stats, attention stats)."""
    from cxrsearch.explain import render

    files: dict[str, Path] = {}
    if decoded is None or geometry is None:
        return files, None, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QueryError(f"cannot create the output folder ({exc.strerror or exc})", path=folder) from None
    gray = decoded.pixels
    jobs: list[tuple[str, str, np.ndarray, render.Scale]] = []  # (file key, caption, heat on the film, scale)
    pixel_stats = attention_stats = None
    if pixels is not None:
        heat = to_original(pixels.attributions, geometry)
        caption = f"Integrated Gradients ({pixels.baseline} baseline, {pixels.steps} steps)\ngreen raises the score, pink lowers it"
        jobs.append(("ig_overlay", caption, heat, render.attribution_scale(heat)))
        pixel_stats = heatmap_stats(pixels.attributions, geometry)
    if attention is not None:
        heat = to_original(attention.rollout, geometry)
        label = f"text -> image attention rollout (uniform would be {float(attention.rollout.mean()):.4f})"
        caption = f"attention, not attribution: report -> film\nrollout over {len(attention.per_layer)} fusion layers"
        jobs.append(("attention_overlay", caption, heat, render.attention_scale(heat, label)))
        attention_stats = heatmap_stats(grid_to_canvas(attention.rollout, geometry.canvas_size), geometry)

    def overlay(job: tuple[str, str, np.ndarray, render.Scale]) -> np.ndarray:
        name, _, heat, scale = job
        image = render.overlay_rgb(gray, heat, scale)
        files[name] = render.save_png(folder / f"{key}_{_SUFFIX[name]}.png", image)
        return image

    # full-size blending and PNG encoding release the GIL: the two overlays are made side by side
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        overlays = list(pool.map(overlay, jobs))
    panels: list[tuple[str, np.ndarray, render.Scale | None]] = [
        (
            f"radiograph {decoded.width}x{decoded.height}",
            np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8),
            render.film_scale(),
        )
    ]
    panels += [(caption, image, scale) for (_, caption, _, scale), image in zip(jobs, overlays)]
    files["figure"] = render.render_figure(folder / f"{key}_explain.png", panels, title)
    return files, pixel_stats, attention_stats


_SUFFIX = {"ig_overlay": "ig", "attention_overlay": "attention"}


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON (NaN and infinities refused: they are not JSON)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    except ValueError as exc:
        raise QueryError(f"explanation is not valid JSON: {exc}", path=path) from None
    except OSError as exc:
        raise QueryError(f"cannot write the explanation ({exc.strerror or exc})", path=path) from None
    return path
