"""Multi-label prediction quality on one split, at the checkpoint's own thresholds.

- Per label: positives, AUROC and average precision (threshold-free), and F1 of the decisions
  ``prob >= threshold`` with the **checkpoint's thresholds** (tuned on the validation split when the
  model was trained). Nothing here chooses a threshold: the evaluated split never tunes anything.
- A label is *scored* (enters the macro means) when the split holds at least
  :data:`MIN_POSITIVES` positives and at least one negative. Below that, AUROC/AP swing wildly with a
  single study (one positive gives AUROC 0 or 1 by luck), so such labels are listed separately, with
  whatever numbers exist, and never averaged silently.
- Macro AUROC / AP / F1: unweighted means over the scored labels.

Targets are ``Study.labels`` (MeSH-derived); a study without any label is negative for every label,
exactly as in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrsearch.errors import ConfigError
from cxrsearch.model.metrics import f1_at, per_label_metrics

MIN_POSITIVES = 5


@dataclass(frozen=True)
class LabelResult:
    """One label on the evaluated split (``nan`` where undefined, e.g. AUROC without positives)."""

    label: str
    positives: int
    negatives: int
    auroc: float
    average_precision: float
    f1: float
    threshold: float
    scored: bool


@dataclass(frozen=True)
class ClassificationResult:
    """Classification metrics of one split.

    Attributes:
        studies: number of studies scored (rows of the ``[N, L]`` matrices).
        min_positives: the :data:`MIN_POSITIVES` rule in force.
        labels: one :class:`LabelResult` per label, head order.
        macro_auroc, macro_average_precision, macro_f1: means over the scored labels (``nan`` if none).
        scored: names of the labels in the macro means.
        too_few_positives: names of the labels left out of them (fewer than ``min_positives``
            positives, or no negative).
        thresholds_source: where the F1 thresholds came from (always the checkpoint).
    """

    studies: int
    min_positives: int
    labels: tuple[LabelResult, ...]
    macro_auroc: float
    macro_average_precision: float
    macro_f1: float
    scored: tuple[str, ...]
    too_few_positives: tuple[str, ...]
    thresholds_source: str = "checkpoint, tuned on the validation split at training time"


def targets_matrix(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """``[N, L]`` 0/1 matrix of ``label_sets`` in ``labels`` (head) order."""
    column = {name: j for j, name in enumerate(labels)}
    y = np.zeros((len(label_sets), len(labels)), dtype=np.int8)
    for i, names in enumerate(label_sets):
        for name in names:
            if name not in column:
                raise ConfigError(f"classification: label {name!r} is not one of the model's labels")
            y[i, column[name]] = 1
    return y


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def evaluate_classification(
    label_sets: Sequence[Sequence[str]],
    probs: np.ndarray,
    labels: Sequence[str],
    thresholds: Sequence[float],
    min_positives: int = MIN_POSITIVES,
) -> ClassificationResult:
    """Score ``probs`` (``[N, L]``, head order) against the studies' ``label_sets``.

    ``thresholds``: the checkpoint's per-label thresholds (``[L]``); they are used as given.
    """
    labels = tuple(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(label_sets), len(labels)):
        raise ConfigError(f"classification: probs {probs.shape} for {len(label_sets)} studies x {len(labels)} labels")
    if len(thresholds) != len(labels):
        raise ConfigError(f"classification: {len(thresholds)} thresholds for {len(labels)} labels")
    if len(label_sets) == 0:
        raise ConfigError("classification: no studies to score")
    y = targets_matrix(label_sets, labels)
    per_label = per_label_metrics(y, probs, labels)
    f1s = f1_at(y, probs, tuple(thresholds))
    results = []
    for metric, f1, threshold in zip(per_label, f1s, thresholds):
        is_scored = metric.positives >= min_positives and metric.negatives > 0
        results.append(
            LabelResult(
                metric.label,
                metric.positives,
                metric.negatives,
                metric.auroc,
                metric.average_precision,
                f1,
                float(threshold),
                is_scored,
            )
        )
    scored = [r for r in results if r.scored]
    return ClassificationResult(
        studies=len(label_sets),
        min_positives=min_positives,
        labels=tuple(results),
        macro_auroc=_mean([r.auroc for r in scored]),
        macro_average_precision=_mean([r.average_precision for r in scored]),
        macro_f1=_mean([r.f1 for r in scored]),
        scored=tuple(r.label for r in scored),
        too_few_positives=tuple(r.label for r in results if not r.scored),
    )
