"""View normalisation shared by DICOM headers and the Open-i metadata table."""

from __future__ import annotations

import pytest

from cxrsearch.image import VIEWS, normalise_view


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PA", "PA"),
        ("pa ", "PA"),
        ("AP", "AP"),
        ("AP SUPINE", "AP"),
        ("LL", "LATERAL"),
        ("RL", "LATERAL"),
        ("LATERAL", "LATERAL"),
        ("lat", "LATERAL"),
        ("LARGE LATERAL", "LATERAL"),
        ("LLD", None),
        ("RLD", None),
        ("RLO", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("PAX", None),
    ],
)
def test_normalise_view(value: object, expected: str | None) -> None:
    assert normalise_view(value) == expected
    assert expected is None or expected in VIEWS
