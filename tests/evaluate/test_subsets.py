"""Query subsets: word-for-word duplicates of a pool report are not novel, one word makes a report
novel, non-normal leaves out exactly-normal queries, and the real test/train duplicate count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.subsets import SUBSETS, novel_queries, report_key, subset_masks

POOL_TEXTS = ["No acute cardiopulmonary disease.", "Large right pleural effusion.", "", None]


def test_report_key_ignores_case_punctuation_and_whitespace() -> None:
    assert report_key("  No ACUTE  cardiopulmonary\ndisease. ") == "no acute cardiopulmonary disease"
    assert report_key("Heart size normal; XXXX stable.") == "heart size normal xxxx stable"
    assert report_key(None) == "" and report_key("...") == ""


def test_identical_after_normalisation_is_not_novel_and_one_word_is() -> None:
    uids = ["same", "punct", "oneword", "empty", "none"]
    texts = [
        "No acute cardiopulmonary disease.",
        "no acute, cardiopulmonary   DISEASE",
        "No acute pulmonary disease.",
        "",
        None,
    ]
    novel = novel_queries(uids, texts, POOL_TEXTS)
    assert novel == {"oneword", "empty", "none"}  # empty reports never match (nothing to leak)


def test_subset_masks() -> None:
    uids = ["a", "b", "c"]
    texts = ["Large right pleural effusion.", "Small left pleural effusion.", "No acute cardiopulmonary disease."]
    labels = [("pleural effusion",), ("pleural effusion", "atelectasis"), ("normal",)]
    masks = subset_masks(uids, texts, labels, POOL_TEXTS)
    assert tuple(masks) == SUBSETS
    assert masks["all"].tolist() == [True, True, True]
    assert masks["novel"].tolist() == [False, True, False]
    assert masks["non-normal"].tolist() == [True, True, False]
    assert all(m.dtype == np.bool_ for m in masks.values())
    with pytest.raises(ConfigError):
        subset_masks(uids, texts[:2], labels, POOL_TEXTS)


@pytest.mark.slow
def test_real_test_reports_with_an_identical_train_report(reports_tgz: Path) -> None:
    from cxrsearch.data.openi import load_studies

    studies = load_studies(reports_tgz)
    train = [s.report_text() for s in studies if s.split == "train"]
    test = [s for s in studies if s.split == "test" and s.report_text()]
    novel = novel_queries([s.uid for s in test], [s.report_text() for s in test], train)
    duplicated = len(test) - len(novel)
    print(f"{duplicated} of {len(test)} test reports have an identical train report")
    assert 50 <= duplicated <= 120
