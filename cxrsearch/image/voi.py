"""The value stages of the DICOM grey pipeline: padding, modality LUT, then VOI (LUT, window or min-max).

Each stage is a small function over numpy arrays; :func:`apply_voi_pipeline` chains them and
describes what it did in words (``DecodedImage.intensity_mapping``). A VOI stage present in the file
but unusable (bad width, empty LUT, or a window that turns the whole image into one value) is
skipped with a warning, never silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxrsearch.errors import ImageError
from cxrsearch.image import intensity

WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def padding_mask(ds: Any, stored: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """Pixels equal to *PixelPaddingValue* (or inside its *PixelPaddingRangeLimit*), or ``None``."""
    value = ds.get("PixelPaddingValue")
    if value is None:
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    try:
        first = int(value)
        last = int(limit) if limit is not None else first
    except (TypeError, ValueError):
        notes.append("unreadable PixelPaddingValue ignored")
        return None
    lo, hi = min(first, last), max(first, last)
    mask = (stored >= lo) & (stored <= hi)
    if not mask.any():
        return None
    if mask.all():
        notes.append("every pixel is padding (PixelPaddingValue); padding ignored")
        return None
    return mask


def apply_voi_pipeline(
    path: Path, ds: Any, stored: np.ndarray, padding: np.ndarray | None, notes: list[str]
) -> tuple[np.ndarray, str]:
    """Stored values to ``float32`` ``[0, 1]`` (before any MONOCHROME1 inversion) and a description."""
    values, modality_step = modality_lut(path, ds, stored)
    keep = None if padding is None else ~padding
    for stage in (_voi_lut_sequence, _window):
        result = stage(ds, values, notes)
        if result is None:
            continue
        unit, description = result
        if _is_uniform(unit, keep) and not _is_uniform(values, keep):
            notes.append(f"{description} makes the whole image one value; ignored")
            continue
        return unit, _join(modality_step, description)
    unit, lo, hi = intensity.min_max(values, keep)
    if hi <= lo:
        notes.append("the image is uniform: every pixel has the same value")
    return unit, _join(modality_step, f"min-max of the pixel values [{lo:g}, {hi:g}]")


def modality_lut(path: Path, ds: Any, stored: np.ndarray) -> tuple[np.ndarray, str]:
    """*Modality LUT Sequence* (via pydicom) or *Rescale Slope/Intercept*; identity when absent."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        try:
            return apply_modality_lut(stored, ds), "Modality LUT"
        except Exception as exc:
            raise ImageError(f"invalid Modality LUT Sequence ({type(exc).__name__}: {exc})", path) from exc
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        return stored, ""
    try:
        s = float(slope) if slope is not None else 1.0
        b = float(intercept) if intercept is not None else 0.0
    except (TypeError, ValueError) as exc:
        raise ImageError("invalid RescaleSlope/RescaleIntercept value", path) from exc
    if s == 0.0 or not np.isfinite(s) or not np.isfinite(b):
        raise ImageError(f"unusable rescale (slope {s:g}, intercept {b:g})", path)
    if s == 1.0 and b == 0.0:
        return stored, ""
    values = intensity.as_float(stored) * s
    values += b
    return values, f"rescale x{s:g}{b:+g}"


def _voi_lut_sequence(ds: Any, values: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str] | None:
    """First *VOI LUT Sequence* item, output scaled by the LUT's own value range.

    The LUT's actual range is used rather than its nominal bit depth (third *LUT Descriptor* value)
    because real files often declare 16 bits for 12-bit LUT data.
    """
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    if item.get("LUTDescriptor") is None or item.get("LUTData") is None:
        notes.append("VOI LUT Sequence item without LUT Descriptor/Data; ignored")
        return None
    from pydicom.pixels import apply_voi

    try:
        entries, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
        # pydicom decodes the table (US/OW, endianness); indexing it ourselves is ~5x faster.
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds, 0).astype(np.float32)
    except Exception as exc:
        notes.append(f"unreadable VOI LUT ({type(exc).__name__}: {exc}); ignored")
        return None
    lo, hi = float(table.min()), float(table.max())
    if hi <= lo:
        notes.append("VOI LUT maps every value to one output; ignored")
        return None
    table = (table - lo) / (hi - lo)
    if values.dtype.kind in "iu":  # signed arithmetic: uint16 - first would wrap around
        values = values.astype(np.int32 if values.dtype.itemsize <= 2 else np.int64)
    index = np.clip(values - first, 0, entries - 1).astype(np.intp)
    items = f", item 1 of {len(sequence)}" if len(sequence) > 1 else ""
    return table[index], f"VOI LUT ({entries} entries from {first}, output range [{lo:g}, {hi:g}]{items})"


def _window(ds: Any, values: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str] | None:
    """First *Window Center/Width* pair with its *VOI LUT Function* (LINEAR when absent)."""
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    try:
        center, width = _first_float(ds.WindowCenter), _first_float(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        notes.append("unreadable Window Center/Width; ignored")
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in WINDOW_FUNCTIONS:
        notes.append(f"unknown VOI LUT Function {function!r}; LINEAR used")
        function = "LINEAR"
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0 or (function == "LINEAR" and width < 1):
        notes.append(f"window width {width:g} is invalid for {function}; window ignored")
        return None
    if function == "SIGMOID":
        unit = intensity.window_sigmoid(values, center, width)
    else:
        unit = intensity.window_linear(values, center, width, exact=function == "LINEAR_EXACT")
    count = ds["WindowCenter"].VM
    which = f", 1 of {count}" if count > 1 else ""
    return unit, f"window centre {center:g} width {width:g} ({function}{which})"


def _first_float(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _is_uniform(arr: np.ndarray, keep: np.ndarray | None) -> bool:
    values = arr if keep is None else arr[keep]
    return values.size == 0 or bool(values.min() == values.max())


def _join(*steps: str) -> str:
    return ", then ".join(step for step in steps if step)
