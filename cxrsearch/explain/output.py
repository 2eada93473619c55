"""The files an explanation writes into its output folder (``<key>`` is the hit's image or study id).

=============================  ==========================================================
``<key>_explain.png``          side by side: the radiograph, the Integrated Gradients
                               overlay, the attention overlay; colour bars; a title naming
                               the hit, the query and the score
``<key>_ig.png``               the IG overlay alone, at the radiograph's original size
``<key>_attention.png``        the attention overlay alone, at the original size
``<key>.json``                 the ``--json`` output
=============================  ==========================================================

:func:`write_explanation` writes them all for a computed
:class:`~cxrsearch.explain.explanation.Explanation`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch import paths
from cxrsearch.errors import QueryError
from cxrsearch.explain import render
from cxrsearch.explain.heatmap import to_original

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.explain.attention import AttentionMap
    from cxrsearch.explain.attribution import PixelAttribution
    from cxrsearch.explain.explanation import Explanation
    from cxrsearch.explain.request import ExplainRequest
    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry

_Job = tuple[str, str, np.ndarray, render.Scale]
"""One overlay to draw: (file key, caption, heat on the film, scale)."""

_SUFFIX = {"ig_overlay": "ig", "attention_overlay": "attention"}


def write_explanation(explanation: Explanation, request: ExplainRequest) -> Explanation:
    """Write ``explanation``'s PNGs (none without a radiograph) and its JSON into ``request.out_dir``
    (``None``: a new folder, :func:`new_output_dir`).

    Returns the explanation as written: ``files`` names every file, ``timing`` gains the ``render``
    stage (and ``total`` its time); the decoded film is dropped (it is drawn now, and a kept result
    stays small). The JSON file holds that explanation's ``to_dict()``.
    """
    started = time.perf_counter()
    hit = explanation.hit
    key = file_key(hit, hit["id"])
    folder = request.out_dir if request.out_dir is not None else new_output_dir(key)
    title = f"{key} | query: {request.describe_query()} | {explanation.target} = {explanation.score:.3f}"
    files = write_images(
        folder, key, title, explanation.film, explanation.geometry, explanation.pixels, explanation.attention
    )
    files["json"] = folder / f"{key}.json"
    written = dataclasses.replace(
        explanation,
        files=files,
        timing=_with_render(explanation.timing, time.perf_counter() - started),
        film=None,
    )
    write_json(files["json"], written.to_dict())
    return written


def _with_render(timing: dict[str, float], seconds: float) -> dict[str, float]:
    """``timing`` with a ``render`` stage of ``seconds`` before ``total`` (which grows by as much)."""
    laps = {name: value for name, value in timing.items() if name != "total"}
    total = timing.get("total", sum(laps.values()))
    return {**laps, "render": seconds, "total": total + seconds}


def write_images(
    folder: Path,
    key: str,
    title: str,
    decoded: DecodedImage | None,
    geometry: Geometry | None,
    pixels: PixelAttribution | None,
    attention: AttentionMap | None,
) -> dict[str, Path]:
    """Write the overlays and the figure (nothing when there is no radiograph); returns name -> path."""
    files: dict[str, Path] = {}
    if decoded is None or geometry is None:
        return files
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QueryError(f"cannot create the output folder ({exc.strerror or exc})", path=folder) from None
    gray = decoded.pixels
    jobs = _overlay_jobs(geometry, pixels, attention)

    def overlay(job: _Job) -> np.ndarray:
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
    return files


def _overlay_jobs(geometry: Geometry, pixels: PixelAttribution | None, attention: AttentionMap | None) -> list[_Job]:
    """The overlays to draw: IG (with pixel attributions), then attention (with a rollout)."""
    jobs: list[_Job] = []
    if pixels is not None:
        heat = to_original(pixels.attributions, geometry)
        caption = (
            f"Integrated Gradients ({pixels.baseline} baseline, {pixels.steps} steps)\n"
            "green raises the score, pink lowers it"
        )
        jobs.append(("ig_overlay", caption, heat, render.attribution_scale(heat)))
    if attention is not None:
        heat = to_original(attention.rollout, geometry)
        label = f"text -> image attention rollout (uniform would be {float(attention.rollout.mean()):.4f})"
        caption = f"attention, not attribution: report -> film\nrollout over {len(attention.per_layer)} fusion layers"
        jobs.append(("attention_overlay", caption, heat, render.attention_scale(heat, label)))
    return jobs


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


def file_key(hit: dict[str, Any], point_id: str) -> str:
    """A filename-safe name for the hit: its image id, else its study id, else the point id."""
    raw = str(hit.get("image_id") or hit.get("study_id") or point_id)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in raw)


def new_output_dir(key: str) -> Path:
    """A folder that does not exist yet: ``<output dir>/explain/<YYYYmmdd-HHMMSS>-<key>[-n]``."""
    base = paths.output_dir() / "explain" / f"{time.strftime('%Y%m%d-%H%M%S')}-{key}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder
