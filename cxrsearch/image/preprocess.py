"""Grey radiograph -> model input, and model-resolution maps -> the original film.

:func:`preprocess` resizes a grey ``(H, W)`` image in ``[0, 1]`` onto the square ``S x S`` model
canvas as the :class:`~cxrsearch.model.config.PreprocessConfig` says (``letterbox``: keep the aspect
ratio, fit the long side, pad; ``center-crop``: fit the short side, crop the centre) and returns the
``[1, S, S]`` float32 array (numpy only, :mod:`cxrsearch.image.resize`) plus a :class:`Geometry`.
``Geometry.to_original`` maps any heatmap over the canvas (the ``7 x 7`` patch grid, or ``S x S``
pixels) back onto the original ``(H, W)``: padding is never drawn, and (for a crop) film the model
never saw gets ``fill``.

:func:`normalize` is the channel replication + mean/std step; it runs inside the image tower so the
model's input stays grey pixels in ``[0, 1]`` (what Integrated Gradients attributes).

Only the encoders call :func:`preprocess`: :class:`cxrsearch.model.encode.Encoder` (training,
indexing, search and explain, as torch tensors) and the ONNX image side of an image query
(:mod:`cxrsearch.model.onnx_image`, numpy all the way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import ImageError
from cxrsearch.image.resize import resize

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.image.preprocess_config import PreprocessConfig


@dataclass(frozen=True)
class Geometry:
    """Where an original ``(H, W)`` image sits on the ``S x S`` model canvas.

    Canvas coordinates of an original point ``(y, x)`` (pixel corners, continuous) are
    ``(y * scale[0] + offset[0], x * scale[1] + offset[1])``.

    Attributes:
        original_size: ``(H, W)`` of the decoded image.
        canvas_size: ``S``, the model input side.
        resized_size: ``(h, w)`` of the image after resizing, before padding / cropping.
        scale: ``(h / H, w / W)`` canvas pixels per original pixel.
        offset: ``(top, left)`` canvas position of the original's top-left corner: ``>= 0`` for a
            letterbox (the padding above / left of the image), ``<= 0`` for a centre crop.
    """

    original_size: tuple[int, int]
    canvas_size: int
    resized_size: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[int, int]

    def image_box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of the canvas region covered by film (no padding)."""
        top, left = self.offset
        h, w = self.resized_size
        s = self.canvas_size
        return max(top, 0), max(left, 0), min(top + h, s), min(left + w, s)

    def to_original(self, heatmap: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Map a ``(gh, gw)`` map covering the whole canvas onto the original ``(H, W)``.

        Bilinear interpolation (separable, cell-centre aligned) between cells centred on the film
        only: values of padding cells never leak into the result. Original pixels outside the
        canvas (the cut-off sides of a centre crop) get ``fill``.
        Returns ``float32 (H, W)``.
        """
        heat = np.asarray(heatmap, dtype=np.float64)
        if heat.ndim != 2 or heat.shape[0] < 1 or heat.shape[1] < 1:
            raise ImageError(f"heatmap must be 2-D, got shape {heat.shape}")
        rows, inside_y = self._axis(0, heat.shape[0])
        cols, inside_x = self._axis(1, heat.shape[1])
        out = rows @ heat @ cols.T
        out[~inside_y, :] = fill
        out[:, ~inside_x] = fill
        return out.astype(np.float32)

    def _axis(self, axis: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.original_size[axis]
        canvas = (np.arange(n) + 0.5) * self.scale[axis] + self.offset[axis]  # pixel centres on the canvas
        inside = (canvas >= 0) & (canvas < self.canvas_size)
        # interpolate only between cells centred on film, never towards the padding beside it
        start = max(self.offset[axis], 0)
        stop = min(self.offset[axis] + self.resized_size[axis], self.canvas_size)
        centres = (np.arange(cells) + 0.5) * self.canvas_size / cells
        on_film = np.flatnonzero((centres >= start) & (centres < stop))
        if on_film.size:
            lowest, highest = float(on_film[0]), float(on_film[-1])
        else:  # the film is thinner than one cell: use the cell holding its middle
            lowest = highest = float(min(int((start + stop) / 2 / self.canvas_size * cells), cells - 1))
        pos = np.clip(canvas / self.canvas_size * cells - 0.5, lowest, highest)  # in heatmap cell units
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, cells - 1)
        frac = pos - low
        weights = np.zeros((n, cells))
        np.add.at(weights, (np.arange(n), low), 1.0 - frac)
        np.add.at(weights, (np.arange(n), high), frac)
        return weights, inside


def preprocess(pixels: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, Geometry]:
    """Grey ``(H, W)`` float pixels in ``[0, 1]`` -> (``[1, S, S]`` float32 array, :class:`Geometry`).

    numpy only (:mod:`cxrsearch.image.resize`, equal to torch's ``F.interpolate``), so that an image
    query needs no torch; :meth:`cxrsearch.model.encode.Encoder.prepare_images` makes the tensors."""
    array = np.asarray(pixels)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ImageError(f"expected a grey (H, W) image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ImageError("image pixels contain NaN or infinity")
    height, width = (int(v) for v in array.shape)
    size = config.image_size
    fit = size / max(height, width) if config.resize == "letterbox" else size / min(height, width)
    h, w = max(1, round(height * fit)), max(1, round(width * fit))
    resized = np.clip(resize(array, (h, w), config.interpolation), 0.0, 1.0)
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.full((size, size), float(config.pad_value), dtype=np.float32)
    src_t, src_l = max(-top, 0), max(-left, 0)
    dst_t, dst_l = max(top, 0), max(left, 0)
    rows, cols = min(h - src_t, size - dst_t), min(w - src_l, size - dst_l)
    canvas[dst_t : dst_t + rows, dst_l : dst_l + cols] = resized[src_t : src_t + rows, src_l : src_l + cols]
    geometry = Geometry(
        original_size=(height, width),
        canvas_size=size,
        resized_size=(h, w),
        scale=(h / height, w / width),
        offset=(top, left),
    )
    return canvas[None], geometry


def preprocess_batch(images: Sequence[np.ndarray], config: PreprocessConfig) -> tuple[np.ndarray, list[Geometry]]:
    """Several grey images -> (``[B, 1, S, S]`` float32 array, one :class:`Geometry` each)."""
    if not images:
        raise ImageError("no images to preprocess")
    pairs = [preprocess(image, config) for image in images]
    return np.stack([array for array, _ in pairs]), [geometry for _, geometry in pairs]


def normalize(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``[B, 1, S, S]`` grey in ``[0, 1]`` -> ``[B, C, S, S]`` replicated to ``C = len(mean)``, standardised.

    ``mean`` / ``std`` are ``[1, C, 1, 1]`` tensors. Differentiable (used under Integrated Gradients).
    """
    channels = mean.shape[1]
    return (pixels.expand(-1, channels, -1, -1) - mean) / std
