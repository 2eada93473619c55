"""Multi-label classification metrics and per-label decision thresholds.

- AUROC and average precision per label, with scikit-learn; a label is *scored* only when both
  classes occur in ``y_true`` (otherwise its AUROC is undefined and is ``nan``).
- ``macro_auroc``: the unweighted mean AUROC over the scored labels (``nan`` when none is).
- ``tune_thresholds``: per label, the threshold maximising F1 on the data it is given. Call it on the
  **validation** split only; the test split is never used to choose anything.

Decision rule everywhere: a label is predicted when ``prob >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrsearch.errors import ConfigError

FALLBACK_THRESHOLD = 0.5
"""Threshold of a label with no positive (or no negative) example in the tuning split: F1 cannot be
maximised there, so the model's own probability scale decides (predict when ``p >= 0.5``)."""


@dataclass(frozen=True)
class LabelMetrics:
    """Metrics of one label on one split (``nan`` where undefined)."""

    label: str
    positives: int
    negatives: int
    auroc: float
    average_precision: float


@dataclass(frozen=True)
class Thresholds:
    """Per-label thresholds ``values`` (``[L]``, head order), the F1 each reached on the tuning split
    (``nan`` for a fallback label) and the labels that fell back to :data:`FALLBACK_THRESHOLD`."""

    values: tuple[float, ...]
    f1: tuple[float, ...]
    fallback: tuple[str, ...]


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise ConfigError(f"metrics: y_true {y_true.shape} and scores {scores.shape} must both be [N, L]")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("metrics: scores contain nan or inf")
    return (y_true > 0.5).astype(np.int8), scores


def per_label_metrics(y_true: np.ndarray, scores: np.ndarray, labels: tuple[str, ...]) -> tuple[LabelMetrics, ...]:
    """AUROC and AP of every label. ``y_true``: ``[N, L]`` 0/1; ``scores``: ``[N, L]`` probs or logits."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _check(y_true, scores)
    if len(labels) != y.shape[1]:
        raise ConfigError(f"metrics: {len(labels)} label names for {y.shape[1]} columns")
    out = []
    for j, name in enumerate(labels):
        pos = int(y[:, j].sum())
        neg = int(y.shape[0] - pos)
        both = pos > 0 and neg > 0
        auroc = float(roc_auc_score(y[:, j], s[:, j])) if both else math.nan
        ap = float(average_precision_score(y[:, j], s[:, j])) if pos > 0 else math.nan
        out.append(LabelMetrics(name, pos, neg, auroc, ap))
    return tuple(out)


def macro_auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUROC over labels with both classes present in ``y_true`` (``nan`` if there are none)."""
    from sklearn.metrics import roc_auc_score

    y, s = _check(y_true, scores)
    values = [roc_auc_score(y[:, j], s[:, j]) for j in range(y.shape[1]) if 0 < int(y[:, j].sum()) < y.shape[0]]
    return float(np.mean(values)) if values else math.nan


def _best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 for one label, placed halfway between the lowest probability still
    predicted positive and the next lower probability (same decisions on this split, less brittle)."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # candidate cut after each distinct probability value: predict positive for p >= p_sorted[k]
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_value]
    predicted = (np.arange(1, len(p) + 1))[last_of_value]
    f1 = 2.0 * tp / (predicted + y.sum())
    best = int(np.argmax(f1))
    cut_values = p_sorted[last_of_value]
    upper = float(cut_values[best])
    lower = float(cut_values[best + 1]) if best + 1 < len(cut_values) else 0.0
    return 0.5 * (upper + lower), float(f1[best])


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> Thresholds:
    """Per-label F1-maximising thresholds on ``probs`` (``[N, L]`` in ``[0, 1]``); see the module docstring.

    Labels whose column has no positive or no negative fall back to :data:`FALLBACK_THRESHOLD`.
    """
    y, p = _check(y_true, probs)
    if len(labels) != y.shape[1]:
        raise ConfigError(f"thresholds: {len(labels)} label names for {y.shape[1]} columns")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ConfigError("thresholds: probabilities must lie in [0, 1] (pass sigmoid(logits))")
    values, f1s, fallback = [], [], []
    for j, name in enumerate(labels):
        pos = int(y[:, j].sum())
        if pos == 0 or pos == y.shape[0]:
            values.append(FALLBACK_THRESHOLD)
            f1s.append(math.nan)
            fallback.append(name)
            continue
        threshold, f1 = _best_f1_threshold(y[:, j], p[:, j])
        values.append(threshold)
        f1s.append(f1)
    return Thresholds(tuple(values), tuple(f1s), tuple(fallback))


def f1_at(y_true: np.ndarray, probs: np.ndarray, thresholds: tuple[float, ...] | np.ndarray) -> tuple[float, ...]:
    """Per-label F1 of the decisions ``probs >= thresholds`` (``nan`` for a label with no positive
    and no predicted positive)."""
    y, p = _check(y_true, probs)
    pred = p >= np.asarray(thresholds, dtype=np.float64)[None, :]
    tp = (pred & (y == 1)).sum(axis=0)
    denom = pred.sum(axis=0) + y.sum(axis=0)
    return tuple(float(2 * t / d) if d > 0 else math.nan for t, d in zip(tp, denom))
