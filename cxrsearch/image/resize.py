"""Resizing grey images in numpy, equal to ``torch.nn.functional.interpolate`` (to float rounding).

Preprocessing runs on every query film; doing it in numpy lets an image query run without torch
(:mod:`cxrsearch.model.onnx_image`). A resize is separable: ``out = Wy @ image @ Wx.T`` with one
weight matrix per axis, built here exactly as torch builds its kernels:

- ``area``: ``adaptive_avg_pool2d``, output cell ``i`` averages input ``floor(i * n / m)`` to
  ``ceil((i + 1) * n / m)``;
- ``bilinear`` / ``bicubic`` with ``antialias=True, align_corners=False`` (torch's ``_aa`` kernels,
  the same as Pillow's): the filter (triangle, or Keys cubic with ``a = -0.5``) is centred at
  ``scale * (i + 0.5)``, stretched by ``scale`` when shrinking, and its weights are normalised to 1.

``tests/image/test_resize.py`` holds this to torch on real radiographs, shrinking and enlarging.
"""

from __future__ import annotations

import math

import numpy as np

MODES = ("area", "bilinear", "bicubic")


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


FILTERS = {"bilinear": (_triangle, 1.0), "bicubic": (_cubic, 2.0)}


def weights(source: int, target: int, mode: str) -> np.ndarray:
    """``[target, source]`` float64 weights taking ``source`` samples to ``target`` (rows sum to 1)."""
    if mode not in MODES:
        raise ValueError(f"resize mode must be one of {', '.join(MODES)}, not {mode!r}")
    if source < 1 or target < 1:
        raise ValueError(f"cannot resize {source} samples to {target}")
    matrix = np.zeros((target, source), dtype=np.float64)
    if mode == "area":
        for i in range(target):
            start = (i * source) // target
            stop = -((-(i + 1) * source) // target)  # ceil
            matrix[i, start:stop] = 1.0 / (stop - start)
        return matrix
    kernel, half_width = FILTERS[mode]
    scale = source / target
    support = half_width * scale if scale >= 1.0 else half_width
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(target):
        center = scale * (i + 0.5)
        low = max(math.trunc(center - support + 0.5), 0)
        high = min(math.trunc(center + support + 0.5), source)
        taps = kernel((np.arange(low, high) - center + 0.5) * invscale)
        total = taps.sum()
        if total != 0.0:
            matrix[i, low:high] = taps / total
    return matrix


def _bands(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weight matrix as (first source index, ``[target, K]`` taps): each row's non-zero band."""
    nonzero = matrix != 0.0
    starts = np.argmax(nonzero, axis=1)
    stops = matrix.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    width = int((stops - starts).max())
    starts = np.minimum(starts, matrix.shape[1] - width)  # keep every band inside the source
    columns = starts[:, None] + np.arange(width)[None, :]
    return starts, np.take_along_axis(matrix, columns, axis=1).astype(np.float32)


def _along_rows(array: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix @ array``, reading only each output row's band of source rows (a few dozen)."""
    starts, taps = _bands(matrix)
    out = np.zeros((matrix.shape[0], array.shape[1]), dtype=np.float32)
    for k in range(taps.shape[1]):
        out += taps[:, k : k + 1] * array[starts + k]
    return out


def resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Grey ``(H, W)`` float image -> ``size`` = ``(h, w)`` float32, as ``F.interpolate`` would."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"resize expects a grey (H, W) image, got shape {array.shape}")
    rows = weights(array.shape[0], size[0], mode)
    cols = weights(array.shape[1], size[1], mode)
    return np.ascontiguousarray(_along_rows(_along_rows(array, rows).T, cols).T)
