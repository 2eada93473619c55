"""Ranking metrics for one judged ranking, and their means over queries.

A query's ranking is *judged* (see :mod:`cxrsearch.evaluate.relevance`) into a :class:`Judged`:
which hits are relevant, each hit's graded gain, how many relevant studies the searched pool holds,
and the best gains the pool could have offered. Definitions (``rel_i`` is 1 when the hit at rank
``i`` is relevant, ``g_i`` its gain, ``R`` the number of relevant studies in the pool):

=============  ==========================================================================
``P@k``        ``sum(rel_1..k) / k`` (a ranking shorter than ``k`` is not excused)
``R@k``        ``sum(rel_1..k) / R``
``AP@k``       ``sum_i<=k P@i * rel_i / min(R, k)`` (mean over queries = ``mAP@k``): 1.0 when the
               first ``min(R, k)`` hits are all relevant
``nDCG@k``     ``DCG@k / IDCG@k`` with ``DCG@k = sum_i<=k g_i / log2(i + 1)``; ``IDCG@k`` is the
               DCG of the pool's ``k`` best gains in decreasing order. Gains are label-set Jaccard
               similarities (graded), see the relevance module
``MRR``        ``1 / rank`` of the first relevant hit within the judged depth (``0`` if none),
               i.e. MRR@K with ``K`` = the largest ``k`` asked for
=============  ==========================================================================

Queries with ``R == 0`` have no defined recall, AP or nDCG; the caller leaves them out (and says
how many). Everything here is plain numpy and exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrsearch.errors import ConfigError

METRIC_NAMES = ("P", "R", "mAP", "nDCG")
"""The per-``k`` metrics, as they appear in keys such as ``"P@10"``; ``MRR`` has no ``k``."""


@dataclass(frozen=True)
class Judged:
    """One query's ranking after relevance judgement.

    Attributes:
        relevant: ``[K]`` bool, rank order (index 0 = rank 1); ``K`` may be shorter than asked.
        gains: ``[K]`` float in ``[0, 1]``, the graded gain of each hit (0 for irrelevant hits).
        n_relevant: ``R``, relevant studies in the searched pool (the query's own study excluded).
        ideal_gains: ``[K']`` the pool's best gains in decreasing order (``K' >= K`` is fine).
    """

    relevant: np.ndarray
    gains: np.ndarray
    n_relevant: int
    ideal_gains: np.ndarray


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"metrics: k must be >= 1, not {k}")


def precision_at(relevant: np.ndarray, k: int) -> float:
    """``P@k``: relevant hits among the first ``k``, divided by ``k``."""
    _check_k(k)
    return float(np.count_nonzero(np.asarray(relevant, dtype=bool)[:k])) / k


def recall_at(relevant: np.ndarray, n_relevant: int, k: int) -> float:
    """``R@k``: relevant hits among the first ``k``, divided by ``R`` (``nan`` when ``R == 0``)."""
    _check_k(k)
    if n_relevant <= 0:
        return float("nan")
    return float(np.count_nonzero(np.asarray(relevant, dtype=bool)[:k])) / n_relevant


def average_precision_at(relevant: np.ndarray, n_relevant: int, k: int) -> float:
    """``AP@k``: mean of ``P@i`` over the relevant ranks ``i <= k``, normalised by ``min(R, k)``."""
    _check_k(k)
    if n_relevant <= 0:
        return float("nan")
    rel = np.asarray(relevant, dtype=bool)[:k]
    if not rel.any():
        return 0.0
    ranks = np.flatnonzero(rel) + 1  # 1-based ranks of the relevant hits
    precision_at_hits = np.arange(1, len(ranks) + 1) / ranks
    return float(precision_at_hits.sum() / min(n_relevant, k))


def dcg(gains: np.ndarray, k: int) -> float:
    """``sum_i<=k g_i / log2(i + 1)`` with 1-based ranks ``i``."""
    g = np.asarray(gains, dtype=np.float64)[:k]
    return float((g / np.log2(np.arange(2, len(g) + 2))).sum())


def ndcg_at(gains: np.ndarray, ideal_gains: np.ndarray, k: int) -> float:
    """``nDCG@k`` of ``gains`` against the pool's best gains (``nan`` when the ideal DCG is 0)."""
    _check_k(k)
    ideal = dcg(np.sort(np.asarray(ideal_gains, dtype=np.float64))[::-1], k)
    if ideal <= 0.0:
        return float("nan")
    return dcg(gains, k) / ideal


def reciprocal_rank(relevant: np.ndarray) -> float:
    """``1 / rank`` of the first relevant hit, ``0.0`` when no hit is relevant."""
    hits = np.flatnonzero(np.asarray(relevant, dtype=bool))
    return 1.0 / (int(hits[0]) + 1) if hits.size else 0.0


def query_metrics(judged: Judged, ks: Sequence[int]) -> dict[str, float]:
    """Every metric of one query: ``{"P@1": .., "R@1": .., "mAP@1": .., "nDCG@1": .., ..., "MRR": ..}``.

    ``mAP@k`` here is the query's ``AP@k``; :func:`mean_metrics` averages it into the mAP.
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"P@{k}"] = precision_at(judged.relevant, k)
        out[f"R@{k}"] = recall_at(judged.relevant, judged.n_relevant, k)
        out[f"mAP@{k}"] = average_precision_at(judged.relevant, judged.n_relevant, k)
        out[f"nDCG@{k}"] = ndcg_at(judged.gains, judged.ideal_gains, k)
    out["MRR"] = reciprocal_rank(judged.relevant[: max(ks)])
    return out


def metric_keys(ks: Sequence[int]) -> tuple[str, ...]:
    """The keys :func:`query_metrics` returns, in order."""
    return tuple(f"{name}@{k}" for k in ks for name in METRIC_NAMES) + ("MRR",)


def mean_metrics(judged: Sequence[Judged], ks: Sequence[int]) -> dict[str, float]:
    """Mean of every metric over the queries.

    Raises :class:`ConfigError` for an empty query list (a mean over nothing is not a number anyone
    should read) and for a query whose metrics are undefined (``R == 0`` or no positive gain: leave
    such queries out before averaging, and report how many).
    """
    if not judged:
        raise ConfigError("metrics: no judged queries to average")
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"metrics: k values must be >= 1, got {list(ks)}")
    rows = [query_metrics(j, ks) for j in judged]
    keys = metric_keys(ks)
    table = np.array([[row[key] for key in keys] for row in rows], dtype=np.float64)
    if np.isnan(table).any():
        bad = int(np.isnan(table).any(axis=1).sum())
        raise ConfigError(f"metrics: {bad} queries have no relevant study in the pool; leave them out first")
    return {key: float(value) for key, value in zip(keys, table.mean(axis=0))}
