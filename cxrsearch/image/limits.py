"""The decompression-bomb guard: image sizes refused before any pixel is decoded.

A 1 kB file can declare a 100,000 x 100,000 image; decoding it would allocate tens of gigabytes.
Every decoder reads the declared size from the header (DICOM *Rows*/*Columns*, the PNG/JPEG size
Pillow reads without decoding) and calls :func:`check_dimensions` before touching pixel data.
The largest real radiographs (full-field mammography, long-leg studies) stay well below these.
"""

from __future__ import annotations

from pathlib import Path

from cxrsearch.errors import ImageError

MAX_SIDE = 16_384
"""Largest accepted height or width, in pixels."""

MAX_PIXELS = 100_000_000
"""Largest accepted height x width (100 megapixels: 400 MB as float32)."""


def check_dimensions(path: str | Path, rows: int, columns: int) -> None:
    """Raise :class:`ImageError` unless ``rows x columns`` is a plausible image size."""
    if rows <= 0 or columns <= 0:
        raise ImageError(f"declares an empty image ({rows} rows x {columns} columns)", path)
    if rows > MAX_SIDE or columns > MAX_SIDE or rows * columns > MAX_PIXELS:
        raise ImageError(
            f"declares {rows} rows x {columns} columns, above the limit of {MAX_SIDE} per side and "
            f"{MAX_PIXELS // 1_000_000} megapixels (decompression-bomb guard); refused before decoding",
            path,
        )
