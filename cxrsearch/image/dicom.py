"""DICOM radiographs to :class:`DecodedImage`, through pydicom 3.

Pipeline (DICOM PS3.3 C.11 "grayscale pipeline", in this order):

1. read the header (pixel data deferred) and check it: pixel data present, one frame, a
   supported photometric interpretation, sane bit depths, and the size guard of
   :mod:`cxrsearch.image.limits`, all *before* any pixel is decoded;
2. decode the stored values (pydicom + pylibjpeg plugins for compressed transfer syntaxes;
   pydicom masks bits above *BitsStored* and applies the sign of *PixelRepresentation*);
3. note *PixelPaddingValue* pixels (kept out of min-max, output as 0);
4. modality LUT: *Modality LUT Sequence* (pydicom's ``apply_modality_lut``) or *Rescale
   Slope/Intercept*;
5. VOI: the first *VOI LUT Sequence* item (pydicom's ``apply_voi``, output scaled by the LUT's own
   range), else the first *Window Center/Width* with its *VOI LUT Function* (LINEAR,
   LINEAR_EXACT, SIGMOID; see :mod:`cxrsearch.image.intensity`), else min-max over the image's
   own (non-padding) values: raw CR/DX data rarely spans its nominal *BitsStored* range, so
   dividing by ``2**BitsStored - 1`` would give washed-out images;
6. MONOCHROME1 is inverted (``1 - x``) so that the output is always MONOCHROME2.

Colour DICOMs (RGB, YBR_*) are converted to grey (BT.601 luma) with a warning; other photometric
interpretations (PALETTE COLOR...) are refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrsearch.errors import ImageError
from cxrsearch.image import intensity
from cxrsearch.image.decoded import DecodedImage
from cxrsearch.image.limits import check_dimensions
from cxrsearch.image.view import normalise_view
from cxrsearch.image.voi import apply_voi_pipeline, padding_mask

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_DEFER_SIZE = "256 KB"  # elements larger than this (pixel data) are read only when used


@dataclass(frozen=True)
class _Header:
    rows: int
    columns: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    transfer_syntax: str


def decode_dicom(path: Path) -> DecodedImage:
    """Decode one single-frame DICOM Part 10 file (see the module docstring for the pipeline)."""

    # pydicom warns while parsing and converting header values, and those warnings can quote the
    # values (names, dates): they are counted, never copied. Warnings of the pixel decoding step
    # itself are about pixel data and become DecodedImage.warnings.
    with warnings.catch_warnings(record=True) as header_warnings:
        warnings.simplefilter("always")
        ds = _read(path)
        header = _check_header(path, ds, [str(w.message) for w in header_warnings])
        with warnings.catch_warnings(record=True) as pixel_warnings:
            warnings.simplefilter("always")
            stored = _decode_pixels(path, ds, header)
        notes = [_one_line(str(w.message)) for w in pixel_warnings]
        if header.photometric in MONOCHROME:
            pixels, mapping, stored_range = _grey_pipeline(path, ds, header, stored, notes)
        else:
            pixels, mapping, stored_range = _colour_to_grey(header, stored, notes)
        view = normalise_view(ds.get("ViewPosition"))
        modality = str(ds.get("Modality") or "").strip() or None
    if header_warnings:
        notes.append(
            f"pydicom reported {len(header_warnings)} header irregularities (not shown: they may quote header values)"
        )
    return DecodedImage(
        pixels=pixels,
        kind="dicom",
        path=path,
        photometric=header.photometric,
        bits_stored=header.bits_stored,
        view=view,
        transfer_syntax=header.transfer_syntax,
        modality=modality,
        source_dtype=str(stored.dtype),
        stored_min=stored_range[0],
        stored_max=stored_range[1],
        intensity_mapping=mapping,
        warnings=tuple(dict.fromkeys(notes)),
    )


def _read(path: Path) -> Any:
    """Parse the header, deferring large elements (the pixel data) until they are used."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size=_DEFER_SIZE)
    except InvalidDicomError as exc:
        raise ImageError(f"not a valid DICOM file ({_one_line(str(exc))})", path) from exc
    except Exception as exc:  # pydicom raises many types for broken headers
        raise ImageError(
            f"DICOM header cannot be parsed, the file is corrupt or truncated "
            f"({type(exc).__name__}: {_one_line(str(exc))})",
            path,
        ) from exc


def _check_header(path: Path, ds: Any, header_warnings: list[str]) -> _Header:
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageError("float pixel data (parametric maps) is not a radiograph; unsupported", path)
        if any("End of file" in w or "end of file" in w for w in header_warnings):
            raise ImageError(
                "file is truncated: the end of the file was reached inside the data, no complete pixel data", path
            )
        raise ImageError("DICOM file has no pixel data (a report, structured report or truncated file?)", path)

    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not transfer_syntax:
        raise ImageError("DICOM file meta has no TransferSyntaxUID", path)

    frames = _int(path, ds, "NumberOfFrames", default=1)
    if frames < 1:
        raise ImageError(f"DICOM header declares {frames} frames", path)
    if frames > 1:
        raise ImageError(
            f"multi-frame DICOM ({frames} frames) is not supported: expected one radiograph per file", path
        )
    rows, columns = _int(path, ds, "Rows"), _int(path, ds, "Columns")
    check_dimensions(path, rows, columns)

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    samples = _int(path, ds, "SamplesPerPixel", default=1)
    if photometric not in MONOCHROME + COLOUR:
        raise ImageError(
            f"unsupported photometric interpretation {photometric or '(missing)'!r}; "
            f"supported: {', '.join(MONOCHROME + COLOUR)}",
            path,
        )
    expected_samples = 1 if photometric in MONOCHROME else 3
    if samples != expected_samples:
        raise ImageError(f"{photometric} with SamplesPerPixel {samples} (expected {expected_samples})", path)

    bits_allocated = _int(path, ds, "BitsAllocated")
    bits_stored = _int(path, ds, "BitsStored", default=bits_allocated)
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise ImageError(f"invalid bit depth: BitsAllocated {bits_allocated}, BitsStored {bits_stored}", path)

    _check_decoder(path, str(transfer_syntax))
    return _Header(rows, columns, samples, photometric, bits_allocated, bits_stored, str(transfer_syntax))


def _check_decoder(path: Path, uid: str) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    try:
        decoder = get_decoder(UID(uid))
    except NotImplementedError as exc:
        raise ImageError(f"transfer syntax {uid} ({UID(uid).name}) has no pixel decoder", path) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise ImageError(f"transfer syntax {UID(uid).name} cannot be decoded here ({missing})", path)


def _decode_pixels(path: Path, ds: Any, header: _Header) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as exc:  # codec and buffer errors of every kind
        raise ImageError(
            f"pixel data cannot be decoded, it is truncated or corrupt ({type(exc).__name__}: {_one_line(str(exc))})",
            path,
        ) from exc
    expected = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if arr.shape != expected:
        raise ImageError(f"decoded pixel array has shape {arr.shape}, the header declares {expected}", path)
    return arr


def _grey_pipeline(
    path: Path, ds: Any, header: _Header, stored: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, str, tuple[float, float]]:
    stored_range = (float(stored.min()), float(stored.max()))
    padding = padding_mask(ds, stored, notes)
    unit, mapping = apply_voi_pipeline(path, ds, stored, padding, notes)
    if header.photometric == "MONOCHROME1":
        intensity.invert(unit)
        mapping += ", inverted (MONOCHROME1 to MONOCHROME2)"
    if padding is not None:
        unit[padding] = 0.0
        mapping += ", padding pixels set to 0"
    return unit, mapping, stored_range


def _colour_to_grey(header: _Header, rgb: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str, tuple[float, float]]:
    if intensity.channels_equal(rgb):
        grey = rgb[..., 0]
        notes.append(f"{header.photometric} image with three equal channels read as grey")
    else:
        grey = intensity.luma(rgb)
        notes.append(f"colour image ({header.photometric}) converted to grey (BT.601 luma)")
    max_value = float(2**header.bits_stored - 1)
    mapping = f"grey divided by {max_value:g} (2**BitsStored - 1)"
    return intensity.scale_to_unit(grey, max_value), mapping, (float(grey.min()), float(grey.max()))


def _int(path: Path, ds: Any, keyword: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            if default is None:
                raise ImageError(f"DICOM header has no {keyword}", path)
            return default
        return int(value)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"DICOM header has an invalid {keyword} value", path) from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())
