"""The report text the model reads: findings + impression with de-identification tokens handled."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrsearch.data.openi import load_studies
from cxrsearch.text.report import clean_section, report_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Normal chest x-XXXX.", "Normal chest x-ray."),
        ("Comparison chest X-XXXX, XXXX.", "Comparison chest X-ray."),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        (
            "Heart XXXX, mediastinum, XXXX, bony structures are unremarkable.",
            "Heart, mediastinum, bony structures are unremarkable.",
        ),
        ("No pneumothorax. XXXX XXXX are intact.", "No pneumothorax. are intact."),
        ("Calcified XXXX/granulomas.", "Calcified granulomas."),
        ("Prior exam (XXXX) shows no change..", "Prior exam shows no change."),
        ("XXXX's sign", "sign"),
        ("  lots   of\n spaces ", "lots of spaces"),
    ],
)
def test_clean_section(raw: str, clean: str) -> None:
    assert clean_section(raw) == clean


@pytest.mark.parametrize("raw", [None, "", "XXXX", "XXXX, XXXX.", " . "])
def test_sections_with_nothing_left_are_missing(raw: str | None) -> None:
    assert clean_section(raw) is None


def test_report_text_joins_findings_then_impression() -> None:
    assert report_text("Heart is enlarged", "Cardiomegaly.") == "Heart is enlarged. Cardiomegaly."
    assert report_text(None, "No acute disease.") == "No acute disease."
    assert report_text("Clear lungs.", "Clear lungs.") == "Clear lungs."
    assert report_text(None, "XXXX.") == ""


def test_real_report_texts(reports_tgz: Path) -> None:
    texts = [s.report_text() for s in load_studies(reports_tgz)]
    assert not any("XXXX" in t or "  " in t or " ." in t or " ," in t for t in texts)
    assert sum(1 for t in texts if t == "") == 28  # reports with neither findings nor impression
    assert sum(1 for t in texts if "x-ray" in t.lower()) == 70
