"""View position (PA / AP / LATERAL) from the free-text values found in DICOM headers and tables."""

from __future__ import annotations

from cxrsearch.defaults import VIEWS

__all__ = ["VIEWS", "normalise_view"]

_LATERAL = {"LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL", "LARGE LATERAL"}


def normalise_view(value: object) -> str | None:
    """Map a *ViewPosition* value to ``"PA"``, ``"AP"``, ``"LATERAL"`` or ``None``.

    ``"PA"``/``"AP"`` (also ``"AP SUPINE"``, ``"pa "``...) keep their name; ``"LL"``, ``"RL"``,
    ``"LATERAL"``, ``"LAT"``, ``"LARGE LATERAL"`` (an Open-i value) become ``"LATERAL"``. Anything
    else gives ``None``, on purpose including the decubitus views ``"LLD"``/``"RLD"`` (a frontal
    beam on a patient lying on their side) and obliques ``"LLO"``/``"RLO"``: they are not one of
    the three views, and guessing would put wrong facts into search filters.
    """
    if value is None:
        return None
    text = " ".join(str(value).upper().replace("_", " ").split())
    if not text:
        return None
    if text in _LATERAL:
        return "LATERAL"
    first = text.split(" ")[0]
    if first in ("PA", "AP"):
        return first
    return None
