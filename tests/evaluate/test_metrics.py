"""Ranking metrics against values computed by hand on small crafted rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.metrics import (
    Judged,
    average_precision_at,
    mean_metrics,
    ndcg_at,
    precision_at,
    query_metrics,
    recall_at,
    reciprocal_rank,
)

# Ranking A: hits at ranks 1 and 3 out of 5; the pool holds R = 4 relevant studies.
REL_A = np.array([1, 0, 1, 0, 0], dtype=bool)
GAINS_A = np.array([1.0, 0.0, 0.5, 0.0, 0.0])
IDEAL_A = np.array([0.25, 1.0, 0.5, 1.0, 0.5])  # unsorted on purpose: ndcg sorts the ideal gains
# Ranking B: the only relevant study (R = 1) comes third.
REL_B = np.array([0, 0, 1], dtype=bool)


def test_precision_and_recall_by_hand() -> None:
    assert precision_at(REL_A, 1) == 1.0
    assert precision_at(REL_A, 3) == pytest.approx(2 / 3)
    assert precision_at(REL_A, 5) == pytest.approx(2 / 5)
    assert precision_at(REL_A[:2], 5) == pytest.approx(1 / 5)  # a short ranking is not excused
    assert recall_at(REL_A, 4, 1) == pytest.approx(1 / 4)
    assert recall_at(REL_A, 4, 3) == pytest.approx(2 / 4)
    assert recall_at(REL_B, 1, 2) == 0.0
    assert recall_at(REL_B, 1, 3) == 1.0
    assert math.isnan(recall_at(REL_B, 0, 3))


def test_average_precision_by_hand() -> None:
    # AP@3 = (P@1 + P@3) / min(R=4, 3) = (1 + 2/3) / 3
    assert average_precision_at(REL_A, 4, 3) == pytest.approx((1 + 2 / 3) / 3)
    # AP@5 = (1 + 2/3) / min(4, 5)
    assert average_precision_at(REL_A, 4, 5) == pytest.approx((1 + 2 / 3) / 4)
    # B: one relevant study at rank 3: AP@3 = (1/3) / 1; nothing in the first 2
    assert average_precision_at(REL_B, 1, 3) == pytest.approx(1 / 3)
    assert average_precision_at(REL_B, 1, 2) == 0.0
    # perfect ranking of min(R, k) relevant hits -> 1
    assert average_precision_at(np.array([1, 1, 0]), 2, 3) == pytest.approx(1.0)


def test_ndcg_with_graded_gains_by_hand() -> None:
    # DCG@3 = 1/log2(2) + 0/log2(3) + 0.5/log2(4) = 1.25
    # IDCG@3 (ideal gains sorted: 1, 1, 0.5) = 1 + 1/log2(3) + 0.5/2
    expected = 1.25 / (1 + 1 / math.log2(3) + 0.25)
    assert ndcg_at(GAINS_A, IDEAL_A, 3) == pytest.approx(expected)
    assert ndcg_at(GAINS_A, IDEAL_A, 1) == pytest.approx(1.0)
    assert ndcg_at(np.array([1.0, 1.0, 0.5]), IDEAL_A, 3) == pytest.approx(1.0)
    assert math.isnan(ndcg_at(GAINS_A, np.zeros(3), 3))


def test_reciprocal_rank_by_hand() -> None:
    assert reciprocal_rank(REL_A) == 1.0
    assert reciprocal_rank(REL_B) == pytest.approx(1 / 3)
    assert reciprocal_rank(np.zeros(4, dtype=bool)) == 0.0


def test_means_over_queries_by_hand() -> None:
    a = Judged(REL_A, GAINS_A, 4, IDEAL_A)
    b = Judged(REL_B, REL_B.astype(float), 1, np.array([1.0]))
    one = query_metrics(b, [1, 3])
    assert one == pytest.approx(
        {
            "P@1": 0.0,
            "R@1": 0.0,
            "mAP@1": 0.0,
            "nDCG@1": 0.0,
            "P@3": 1 / 3,
            "R@3": 1.0,
            "mAP@3": 1 / 3,
            "nDCG@3": 0.5,
            "MRR": 1 / 3,
        }
    )
    means = mean_metrics([a, b], [1, 3])
    assert means["P@1"] == pytest.approx(0.5)
    assert means["P@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert means["R@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert means["mAP@3"] == pytest.approx(((1 + 2 / 3) / 3 + 1 / 3) / 2)
    assert means["MRR"] == pytest.approx((1 + 1 / 3) / 2)
    # MRR is judged within the largest k only: B's hit at rank 3 is outside k = 2
    assert mean_metrics([b], [1, 2])["MRR"] == 0.0


def test_means_refuse_undefined_queries() -> None:
    with pytest.raises(ConfigError):
        mean_metrics([], [1])
    with pytest.raises(ConfigError, match="no relevant"):
        mean_metrics([Judged(REL_B, np.zeros(3), 0, np.zeros(3))], [1])
