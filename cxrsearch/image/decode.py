"""The entry point of the image package: a file path in, a :class:`DecodedImage` out.

The file type is decided by content, never by extension: a DICOM Part 10 file has ``DICM`` at byte
128, a PNG starts with ``\\x89PNG\\r\\n\\x1a\\n``, a JPEG with ``FF D8 FF``. Anything else is refused
with an :class:`~cxrsearch.errors.ImageError` that says what the file looks like instead (empty,
text, GIF, TIFF, a DICOM dataset without its Part 10 header...). See docs/images.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrsearch.errors import ImageError
from cxrsearch.image.decoded import DecodedImage
from cxrsearch.image.polarity import polarity

KINDS = ("dicom", "png", "jpeg")

_SNIFF_BYTES = 512
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_OTHER_FORMATS = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 (JP2) image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a zip archive"),
)


def sniff_kind(path: str | Path) -> str:
    """``"dicom"``, ``"png"`` or ``"jpeg"`` from the first bytes of ``path``.

    Raises :class:`ImageError` (naming the file and what it is instead) for a missing, unreadable
    or empty file, and for any other content.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except FileNotFoundError as exc:
        raise ImageError("no such file", path) from exc
    except IsADirectoryError as exc:
        raise ImageError("is a directory, not an image file", path) from exc
    except OSError as exc:
        raise ImageError(f"cannot be read ({exc.strerror or exc})", path) from exc
    if not head:
        raise ImageError("empty file (0 bytes)", path)
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    raise ImageError(f"not a DICOM, PNG or JPEG file: {_describe(head)}", path)


def decode_image(path: str | Path, fix_negatives: bool = True) -> DecodedImage:
    """Decode a radiograph (DICOM, PNG or JPEG, by content) to grey ``[0, 1]`` at its own geometry.

    A PNG/JPEG stored as a negative is inverted (``inverted`` set, a warning says so) unless
    ``fix_negatives`` is False; a DICOM follows its own photometric tag and only gets a warning
    (:mod:`cxrsearch.image.polarity`). Raises :class:`ImageError` naming the file and the reason
    for anything that cannot be decoded into one grey radiograph (see docs/images.md).
    """
    path = Path(path)
    kind = sniff_kind(path)
    if kind == "dicom":
        from cxrsearch.image.dicom import decode_dicom

        image = decode_dicom(path)
    else:
        from cxrsearch.image.raster import decode_raster

        image = decode_raster(path, kind)
    _check_output(image)
    return _normalise_polarity(image, fix_negatives)


def _normalise_polarity(image: DecodedImage, fix_negatives: bool) -> DecodedImage:
    """The one place a negative film becomes MONOCHROME2 (see :mod:`cxrsearch.image.polarity`)."""
    check = polarity(image.pixels)
    if not check.negative:
        return image
    if image.kind == "dicom":
        note = (
            f"looks like a negative after its {image.photometric} mapping ({check.describe()}): the "
            "PhotometricInterpretation tag may be wrong; left as the header says"
        )
        return replace(image, warnings=(*image.warnings, note))
    if not fix_negatives:
        note = f"looks like a film stored as a negative ({check.describe()}); left as stored"
        return replace(image, warnings=(*image.warnings, note))
    note = f"stored as a negative ({check.describe()}): inverted to the usual MONOCHROME2 display"
    pixels = (np.float32(1.0) - image.pixels).astype(np.float32)
    return replace(image, pixels=pixels, inverted=True, warnings=(*image.warnings, note))


def _check_output(image: DecodedImage) -> None:
    """The contract every decoder promises; broken metadata (e.g. an overflowing rescale) can break it."""
    pixels = image.pixels
    if pixels.ndim != 2 or pixels.dtype != np.float32:
        raise ImageError(f"decoding gave a {pixels.dtype} array of shape {pixels.shape}, not 2-D float32", image.path)
    if not np.isfinite(pixels).all():
        raise ImageError("decoding gave non-finite values (overflowing rescale or LUT?)", image.path)


def _describe(head: bytes) -> str:
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return f"it is {what}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it is a WebP image"
    little_endian = head[:2] in (b"\x02\x00", b"\x08\x00") and (
        head[4:6].isalpha() or int.from_bytes(head[4:8], "little") < 1024  # explicit or implicit VR
    )
    big_endian = head[:2] in (b"\x00\x02", b"\x00\x08") and head[4:6].isalpha()
    if little_endian or big_endian:
        return (
            "it looks like a DICOM dataset without the Part 10 header ('DICM' at byte 128); "
            "re-save it as a DICOM Part 10 file"
        )
    if _looks_like_text(head):
        stripped = head.lstrip()
        if stripped.startswith(b"<?xml") or stripped.startswith(b"<"):
            return "it is an XML/HTML text file"
        return "it is a text file"
    return "unrecognised binary content"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # allow a multi-byte character cut at the sniff boundary
            return False
    return True
