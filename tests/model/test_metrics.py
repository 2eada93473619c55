"""Metrics: macro AUROC over scorable labels, F1-optimal thresholds with a documented fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrsearch.errors import ConfigError
from cxrsearch.model.metrics import FALLBACK_THRESHOLD, f1_at, macro_auroc, per_label_metrics, tune_thresholds


def test_macro_auroc_skips_labels_without_both_classes():
    y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.2], [0.2, 0.3, 0.8], [0.7, 0.2, 0.1], [0.4, 0.9, 0.6]])
    # label 0: perfect (1.0); label 1: no positive (skipped); label 2: AUROC by hand = 2/3
    assert macro_auroc(y, s) == pytest.approx((1.0 + 2 / 3) / 2)
    metrics = per_label_metrics(y, s, ("a", "b", "c"))
    assert math.isnan(metrics[1].auroc) and metrics[1].positives == 0
    assert metrics[0].average_precision == pytest.approx(1.0)
    assert math.isnan(macro_auroc(np.zeros((3, 2)), np.ones((3, 2))))


def test_thresholds_maximise_f1_and_fall_back_without_positives():
    y = np.array([[1, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.3], [0.55, 0.4], [0.1, 0.2]])
    t = tune_thresholds(y, p, ("a", "b"))
    # predicting p >= 0.55 flags 4 studies with 3 true positives: F1 = 6/7, the best achievable
    assert t.values[0] == pytest.approx((0.55 + 0.1) / 2)
    assert t.f1[0] == pytest.approx(6 / 7)
    assert t.values[1] == FALLBACK_THRESHOLD and t.fallback == ("b",) and math.isnan(t.f1[1])
    assert f1_at(y, p, t.values)[0] == pytest.approx(6 / 7)


def test_metrics_reject_mismatched_shapes_and_non_probabilities():
    with pytest.raises(ConfigError):
        macro_auroc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        tune_thresholds(np.array([[1], [0]]), np.array([[2.0], [-1.0]]), ("a",))
