"""Model-canvas heatmaps -> the original radiograph, and the numbers that summarise them.

The model saw the film resized onto an ``S x S`` canvas (letterboxed with padding, or centre
cropped). :func:`to_original` undoes that with the preprocessing's
:class:`~cxrsearch.image.preprocess.Geometry`: the result has the original ``(H, W)``, the padding
is dropped (it never reaches the output), and film the model never saw (the cut sides of a centre
crop) is ``NaN`` so nothing is drawn there.

:func:`heatmap_stats` summarises an attribution map on the canvas, where the attributions are
exact (they sum to ``f(x) - f(baseline)`` up to the delta); locations are reported in original
pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.image.preprocess import Geometry


@dataclass(frozen=True)
class HeatmapStats:
    """Summary of a signed canvas map (the IG attributions, or an attention map).

    Attributes:
        total: sum over the whole canvas (for IG: ``f(x) - f(baseline) + delta``).
        positive, negative: sums of the positive and of the negative values.
        on_film_share: share of ``sum |value|`` that lies on film (1.0 unless padding was attributed).
        top5_share: share of ``sum |value|`` on film carried by the top 5 % of film pixels: near
            0.05 for a diffuse map, near 1 for a focal one.
        peak: ``(y, x)`` in original pixels of the largest value; ``peak_value`` that value.
        centroid: ``(y, x)`` in original pixels of the positive mass (``None`` if there is none).
        original_size: ``(H, W)`` of the radiograph.
    """

    total: float
    positive: float
    negative: float
    on_film_share: float
    top5_share: float
    peak: tuple[int, int]
    peak_value: float
    centroid: tuple[int, int] | None
    original_size: tuple[int, int]


def _check(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2 or heat.size == 0 or not np.isfinite(heat).all():
        raise QueryError(f"a heatmap must be a finite 2-D array, got shape {heat.shape}")
    return heat


def to_original(heatmap: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A map over the whole canvas (``S x S`` pixels or the ``rows x cols`` patch grid) -> ``float32 (H, W)``.

    Film the model never saw is ``NaN``; padding is never part of the result.
    """
    return geometry.to_original(_check(heatmap), fill=float("nan"))


def canvas_to_original(geometry: Geometry, y: float, x: float) -> tuple[int, int]:
    """The original pixel under canvas pixel ``(y, x)`` (clamped into the image)."""
    height, width = geometry.original_size
    oy = (y + 0.5 - geometry.offset[0]) / geometry.scale[0] - 0.5
    ox = (x + 0.5 - geometry.offset[1]) / geometry.scale[1] - 0.5
    return int(np.clip(round(oy), 0, height - 1)), int(np.clip(round(ox), 0, width - 1))


def film_mask(geometry: Geometry) -> np.ndarray:
    """``bool [S, S]``: canvas pixels covered by film."""
    size = geometry.canvas_size
    top, left, bottom, right = geometry.image_box()
    mask = np.zeros((size, size), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def heatmap_stats(heatmap: np.ndarray, geometry: Geometry) -> HeatmapStats:
    """Statistics of a ``[S, S]`` canvas map (see :class:`HeatmapStats`)."""
    heat = _check(heatmap)
    size = geometry.canvas_size
    if heat.shape != (size, size):
        raise QueryError(f"heatmap shape {heat.shape} is not the {size}x{size} model canvas")
    film = film_mask(geometry)
    magnitude = np.abs(heat)
    total_mass = float(magnitude.sum())
    on_film = magnitude[film]
    film_mass = float(on_film.sum())
    top_count = max(1, int(np.ceil(0.05 * on_film.size)))
    top_mass = float(np.sort(on_film)[-top_count:].sum())
    masked = np.where(film, heat, -np.inf)
    peak_y, peak_x = np.unravel_index(int(np.argmax(masked)), heat.shape)
    positive = np.where(film & (heat > 0), heat, 0.0)
    centroid = None
    if positive.sum() > 0:
        ys, xs = np.indices(heat.shape)
        centroid = canvas_to_original(
            geometry, float((ys * positive).sum() / positive.sum()), float((xs * positive).sum() / positive.sum())
        )
    return HeatmapStats(
        total=float(heat.sum()),
        positive=float(heat[heat > 0].sum()),
        negative=float(heat[heat < 0].sum()),
        on_film_share=film_mass / total_mass if total_mass > 0 else 1.0,
        top5_share=top_mass / film_mass if film_mass > 0 else 0.0,
        peak=canvas_to_original(geometry, float(peak_y), float(peak_x)),
        peak_value=float(heat[peak_y, peak_x]),
        centroid=centroid,
        original_size=geometry.original_size,
    )


def grid_to_canvas(grid_map: np.ndarray, size: int) -> np.ndarray:
    """A ``[rows, cols]`` patch map as a ``[S, S]`` canvas map (each patch's value over its square)."""
    heat = _check(grid_map)
    rows, cols = heat.shape
    ys = np.minimum((np.arange(size) * rows) // size, rows - 1)
    xs = np.minimum((np.arange(size) * cols) // size, cols - 1)
    return heat[np.ix_(ys, xs)]
