"""PNG and JPEG radiographs to :class:`DecodedImage`, through Pillow.

These files are already rendered for display (windowed, MONOCHROME2), so grey levels are divided by
the nominal maximum of their bit depth (255 for 8 bits, 65535 for 16 bits) and never stretched:
min-max would change the contrast the file was made with. Decisions:

- grey ``L`` (8-bit), ``I;16`` (16-bit) and ``1`` (bilevel) are read as they are;
- colour (RGB, RGBA, CMYK, YCbCr, palette) is converted to grey with BT.601 luma, and the conversion
  is recorded in ``warnings`` (an image whose three channels are equal is read exactly);
- alpha channels are dropped, with a warning;
- a JPEG/PNG EXIF orientation other than 1 is applied (the image as it is meant to be viewed), with
  a warning;
- a 16-bit PNG whose values all fit in 12 bits gets a warning (it will look dark: PNG has no
  *BitsStored*, and guessing one per image would make intensities incomparable across images).

The size guard runs on the header size Pillow reads before decoding any pixel.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cxrsearch.errors import ImageError
from cxrsearch.image import intensity
from cxrsearch.image.decoded import DecodedImage
from cxrsearch.image.limits import check_dimensions

_PILLOW_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_COLOUR = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
_EXIF_ORIENTATION = 0x0112


def decode_raster(path: Path, kind: str) -> DecodedImage:
    """Decode a PNG or JPEG file (``kind`` as returned by ``sniff_kind``)."""
    from PIL import Image

    fmt = _PILLOW_FORMAT[kind]
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(path, formats=[fmt]) as im:
                check_dimensions(path, im.height, im.width)
                im.load()
                oriented = _apply_orientation(im, notes)
                grey, photometric, bits = _grey_samples(path, oriented, notes)
        except ImageError:
            raise
        except Image.UnidentifiedImageError as exc:
            raise ImageError(f"{fmt} header cannot be read, the file is truncated or corrupt", path) from exc
        except Image.DecompressionBombError as exc:
            raise ImageError(
                f"image dimensions are above the decompression-bomb limit; refused before decoding ({exc})", path
            ) from exc
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib errors...
            raise ImageError(
                f"{fmt} data cannot be decoded, it is truncated or corrupt "
                f"({type(exc).__name__}: {' '.join(str(exc).split())})",
                path,
            ) from exc
    # Our own size guard governs; Pillow's softer bomb warning (above ~89 MP) is redundant.
    notes.extend(str(w.message) for w in caught if not issubclass(w.category, Image.DecompressionBombWarning))

    max_value = float(2**bits - 1)
    if grey.min() == grey.max():
        notes.append("the image is uniform: every pixel has the same value")
    elif bits == 16 and grey.max() < 4096:
        notes.append(
            f"16-bit image whose largest value is {int(grey.max())} (at most 12 significant bits): "
            "divided by 65535 it looks dark"
        )
    return DecodedImage(
        pixels=intensity.scale_to_unit(grey, max_value),
        kind=kind,
        path=path,
        photometric=photometric,
        bits_stored=bits,
        view=None,
        transfer_syntax=None,
        modality=None,
        source_dtype=grey.dtype.name if photometric == "MONOCHROME2" else "uint8",
        stored_min=float(grey.min()),
        stored_max=float(grey.max()),
        intensity_mapping=f"divided by {max_value:g} (nominal {bits}-bit range)",
        warnings=tuple(dict.fromkeys(notes)),
    )


def _apply_orientation(im: Any, notes: list[str]) -> Any:
    from PIL import ImageOps

    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (None, 1):
        return im
    notes.append(f"EXIF orientation {orientation} applied (the image is stored rotated or flipped)")
    return ImageOps.exif_transpose(im)


def _grey_samples(path: Path, im: Any, notes: list[str]) -> tuple[np.ndarray, str, int]:
    """``(H, W)`` grey samples at the source scale, the photometric interpretation, the bit depth."""
    mode = im.mode
    if mode == "1":
        notes.append("bilevel (1-bit) image")
        return np.asarray(im, dtype=np.uint8), "MONOCHROME2", 1
    if mode == "L":
        return np.asarray(im, dtype=np.uint8), "MONOCHROME2", 8
    if mode in _GREY_16:
        return np.asarray(im).astype(np.uint16, copy=False), "MONOCHROME2", 16
    if mode == "I":  # 16-bit grey PNG as opened by some Pillow versions
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"32-bit integer image (values {arr.min()}..{arr.max()}) is not supported", path)
        return arr.astype(np.uint16), "MONOCHROME2", 16
    if mode in ("LA", "La"):
        notes.append("alpha channel ignored")
        return np.asarray(im)[..., 0].copy(), "MONOCHROME2", 8
    if mode in ("P", "PA"):
        notes.append("palette image")
        with_alpha = mode == "PA" or "transparency" in im.info
        rgb = im.convert("RGBA" if with_alpha else "RGB")
        return _colour_to_grey(rgb, "PALETTE COLOR", notes), "PALETTE COLOR", 8
    if mode in _COLOUR:
        return _colour_to_grey(im, "RGB", notes), "RGB", 8
    raise ImageError(f"unsupported Pillow image mode {mode!r}", path)


def _colour_to_grey(im: Any, photometric: str, notes: list[str]) -> np.ndarray:
    if "A" in im.mode or im.mode == "RGBa":
        notes.append("alpha channel ignored")
    rgb = np.asarray(im.convert("RGB"))
    if intensity.channels_equal(rgb):
        notes.append(f"{photometric} image with three equal channels read as grey")
        return rgb[..., 0].copy()
    notes.append(f"colour image ({photometric}) converted to grey (BT.601 luma)")
    return intensity.luma(rgb)
