"""Strict and lenient relevance from MeSH labels, the normal rule and the query's own study."""

from __future__ import annotations

import numpy as np
import pytest

from cxrsearch.data.labels import label_names
from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.relevance import Pool, Query, jaccard, label_counts, primary_label

VOCAB = label_names()
COUNTS = label_counts(
    [("cardiomegaly",)] * 3 + [("lung opacity",)] * 5 + [("normal",)] * 9 + [("edema", "lung opacity")]
)


def test_primary_label_is_the_rarest_in_train_with_vocabulary_ties() -> None:
    assert COUNTS == {"cardiomegaly": 3, "lung opacity": 6, "normal": 9, "edema": 1}
    assert primary_label(("cardiomegaly", "lung opacity"), COUNTS, VOCAB) == "cardiomegaly"
    assert primary_label(("edema", "lung opacity"), COUNTS, VOCAB) == "edema"
    # a label unseen in train is the rarest of all; equal counts go to vocabulary order
    assert primary_label(("nodule", "cardiomegaly"), COUNTS, VOCAB) == "nodule"
    assert primary_label(("pneumothorax", "atelectasis"), COUNTS, VOCAB) == "atelectasis"
    assert primary_label(("normal",), COUNTS, VOCAB) == "normal"
    assert primary_label((), COUNTS, VOCAB) is None
    with pytest.raises(ConfigError):
        primary_label(("not a label",), COUNTS, VOCAB)


def test_jaccard() -> None:
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert jaccard([], []) == 0.0


POOL = Pool(
    ["Q", "A", "B", "C", "D", "E", "N"],
    [
        ("cardiomegaly", "lung opacity"),  # the query's own study
        ("cardiomegaly",),
        ("lung opacity",),
        ("normal",),
        ("cardiomegaly", "lung opacity"),
        (),
        ("normal",),
    ],
    VOCAB,
)
QUERY = Query("Q", ("cardiomegaly", "lung opacity"), "cardiomegaly")


def test_strict_needs_the_primary_label_and_grades_by_jaccard() -> None:
    gains = dict(zip(POOL.uids, POOL.gains(QUERY, "strict")))
    assert gains == pytest.approx({"Q": 0.0, "A": 0.5, "B": 0.0, "C": 0.0, "D": 1.0, "E": 0.0, "N": 0.0})


def test_lenient_is_any_shared_label() -> None:
    gains = dict(zip(POOL.uids, POOL.gains(QUERY, "lenient")))
    assert gains == pytest.approx({"Q": 0.0, "A": 0.5, "B": 0.5, "C": 0.0, "D": 1.0, "E": 0.0, "N": 0.0})


def test_normal_counts_only_normal_to_normal() -> None:
    normal = Query("C", ("normal",), "normal")
    for mode in ("strict", "lenient"):
        gains = dict(zip(POOL.uids, POOL.gains(normal, mode)))
        assert gains == pytest.approx({"Q": 0.0, "A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 0.0, "N": 1.0})
    # and a normal hit never counts for an abnormal query, in either mode (C and N above)


def test_own_study_is_never_relevant_nor_counted() -> None:
    judged = POOL.judge(QUERY, ["Q", "D", "A", "B"], "strict", depth=3)
    assert judged.relevant.tolist() == [False, True, True]
    assert judged.gains.tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert judged.n_relevant == 2  # A and D; not Q itself
    assert judged.ideal_gains.tolist() == pytest.approx([1.0, 0.5, 0.0])
    lenient = POOL.judge(QUERY, ["B", "E"], "lenient", depth=3)
    assert lenient.relevant.tolist() == [True, False] and lenient.n_relevant == 3


def test_judging_rejects_foreign_hits_and_modes() -> None:
    with pytest.raises(ConfigError, match="not in the searched pool"):
        POOL.judge(QUERY, ["Z"], "strict", depth=1)
    with pytest.raises(ConfigError):
        POOL.gains(QUERY, "loose")
    with pytest.raises(ConfigError):
        Pool(["A", "A"], [(), ()], VOCAB)
    assert isinstance(POOL.matrix, np.ndarray) and POOL.matrix.shape == (7, len(VOCAB))
