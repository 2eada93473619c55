"""Radiograph files (DICOM, PNG, JPEG) to grey pixels at their own geometry: :func:`decode_image`.

Importing this package is cheap: pydicom and Pillow are imported when a file is decoded.
See docs/images.md for the pipeline, the decisions and the limits.
"""

from cxrsearch.image.decode import KINDS, decode_image, sniff_kind
from cxrsearch.image.decoded import DecodedImage
from cxrsearch.image.limits import MAX_PIXELS, MAX_SIDE
from cxrsearch.image.view import VIEWS, normalise_view

__all__ = [
    "KINDS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "VIEWS",
    "DecodedImage",
    "decode_image",
    "normalise_view",
    "sniff_kind",
]
