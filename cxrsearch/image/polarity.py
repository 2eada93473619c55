"""Films stored as negatives: recognise them and show them the usual way (MONOCHROME2).

About half of the Open-i radiographs come from MONOCHROME1 DICOMs (3,584 of the 7,469 rows of the
Open-i metadata table), and their PNGs were written without inverting: white background, dark body
(``CXR1_1_IM-0001-3001.png``: corners 1.00, centre median 0.47). A PNG or JPEG has no photometric
tag, so one image tower would be fed negatives and positives alike.

**How a negative is recognised** (:func:`polarity`), from what the files we have show: outside the
body, a radiograph's corners are air or unexposed plate, which a display-ready positive shows dark
(corner means 0.00-0.42 on the seven positive films of ``../shared/data/images``, DICOMs after their
own photometric mapping included) and a negative white (0.93 and 1.00 on the two negatives there).
The rule: the mean of the four corner patches (5 % of the short side each) is at least
:data:`BRIGHT_CORNERS` **and** exceeds the centre's median by :data:`CORNER_MARGIN`. A positive film
with a white collimation border in every corner could trip it; none of the films we have does.

**Where it is normalised**: only in :func:`cxrsearch.image.decode.decode_image`, for PNG and JPEG
files (a DICOM's own *PhotometricInterpretation* decides for it; a DICOM that still looks negative
gets a warning, never a silent flip). ``decode_image(path, fix_negatives=False)`` (``cxrsearch data
inspect --as-stored``) shows a file as it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BRIGHT_CORNERS = 0.8
"""Corner mean at or above which a film may be a negative (positives here: <= 0.42)."""
CORNER_MARGIN = 0.2
"""How much brighter than the centre's median the corners of a negative are at least."""
CORNER_FRACTION = 0.05


@dataclass(frozen=True)
class Polarity:
    """``negative``: the film looks like a negative; ``corners`` (mean of the four corner patches)
    and ``centre`` (median of the central half) are the evidence, in ``[0, 1]``."""

    negative: bool
    corners: float
    centre: float

    def describe(self) -> str:
        return f"corners {self.corners:.2f}, centre {self.centre:.2f}"


def polarity(pixels: np.ndarray) -> Polarity:
    """Whether grey ``pixels`` (``(H, W)`` in ``[0, 1]``, higher = brighter) look like a negative."""
    height, width = pixels.shape
    side = max(1, int(min(height, width) * CORNER_FRACTION))
    corners = float(
        np.mean(
            [
                pixels[:side, :side].mean(),
                pixels[:side, -side:].mean(),
                pixels[-side:, :side].mean(),
                pixels[-side:, -side:].mean(),
            ]
        )
    )
    centre = float(
        np.median(
            pixels[
                height // 4 : max(height // 4 + 1, 3 * height // 4), width // 4 : max(width // 4 + 1, 3 * width // 4)
            ]
        )
    )
    return Polarity(
        negative=corners >= BRIGHT_CORNERS and corners - centre >= CORNER_MARGIN, corners=corners, centre=centre
    )
