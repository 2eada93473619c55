"""The one output type of the image pipeline: :class:`DecodedImage`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class DecodedImage:
    """A radiograph decoded to grey intensities, plus the facts needed to trust it.

    Treat :attr:`pixels` as read-only (copy before changing it in place).

    Attributes:
        pixels: ``float32`` array of shape ``(H, W)`` with values in ``[0, 1]``, at the file's
            original geometry (no resizing, cropping or padding; an EXIF orientation of a JPEG is
            the only transform, and it is reported in ``warnings``). MONOCHROME2 convention:
            higher = brighter on screen = denser tissue (bone and heart bright, lungs dark).
        kind: ``"dicom"``, ``"png"`` or ``"jpeg"``, decided from the file's content.
        path: the file that was decoded.
        photometric: the source's photometric interpretation in DICOM terms: ``"MONOCHROME1"``,
            ``"MONOCHROME2"``, ``"RGB"``, ``"YBR_FULL"``... For PNG/JPEG: ``"MONOCHROME2"`` for grey
            files, ``"RGB"`` for colour ones, ``"PALETTE COLOR"`` for palette PNGs.
        bits_stored: significant bits per sample in the source (DICOM *BitsStored*; 1, 8 or 16 for
            PNG/JPEG).
        view: ``"PA"``, ``"AP"``, ``"LATERAL"`` from the DICOM *ViewPosition* tag, else ``None``
            (PNG/JPEG carry no view; the Open-i metadata table can supply it, see
            ``cxrsearch.data.pairing``).
        transfer_syntax: the DICOM transfer syntax UID (e.g. ``"1.2.840.10008.1.2.4.50"``), else
            ``None``; :attr:`transfer_syntax_name` gives its name.
        modality: the DICOM *Modality* (``"CR"``, ``"DX"``...), else ``None``.
        source_dtype: numpy dtype of the stored samples before any mapping (``"uint16"``...).
        stored_min, stored_max: range of the stored sample values before any LUT or scaling
            (after conversion to grey for colour sources).
        intensity_mapping: how stored values became ``[0, 1]``, in words (the window used, the
            VOI LUT, min-max, or the nominal bit depth).
        warnings: anything a user should know that did not stop decoding (colour converted to grey,
            alpha dropped, a window that could not be used, decoder warnings...).
        inverted: the PNG/JPEG was stored as a negative and :attr:`pixels` were inverted to the
            MONOCHROME2 convention (see :mod:`cxrsearch.image.polarity`).

    No patient identifier (name, id, birth date, accession number, UIDs...) is ever carried.
    """

    pixels: np.ndarray
    kind: str
    path: Path
    photometric: str
    bits_stored: int
    view: str | None
    transfer_syntax: str | None
    modality: str | None
    source_dtype: str
    stored_min: float
    stored_max: float
    intensity_mapping: str
    warnings: tuple[str, ...] = ()
    inverted: bool = False

    @property
    def height(self) -> int:
        """Rows of :attr:`pixels`."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns of :attr:`pixels`."""
        return int(self.pixels.shape[1])

    @property
    def transfer_syntax_name(self) -> str | None:
        """The transfer syntax by name (``"JPEG Baseline (Process 1)"``), or ``None``."""
        if self.transfer_syntax is None:
            return None
        from pydicom.uid import UID

        return UID(self.transfer_syntax).name

    def summary(self) -> dict[str, object]:
        """JSON-ready facts for ``cxrsearch data inspect`` (everything except the pixels)."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "shape": [self.height, self.width],
            "photometric": self.photometric,
            "bits_stored": self.bits_stored,
            "view": self.view,
            "modality": self.modality,
            "transfer_syntax": self.transfer_syntax,
            "transfer_syntax_name": self.transfer_syntax_name,
            "source_dtype": self.source_dtype,
            "stored_min": self.stored_min,
            "stored_max": self.stored_max,
            "intensity_mapping": self.intensity_mapping,
            "min": float(self.pixels.min()),
            "max": float(self.pixels.max()),
            "mean": float(self.pixels.mean()),
            "inverted": self.inverted,
            "warnings": list(self.warnings),
        }
