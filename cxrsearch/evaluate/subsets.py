"""The query subsets reported side by side: ``all``, ``novel`` and ``non-normal``.

Open-i holds many word-for-word identical reports (templated normal reports above all), and the
study-level split puts copies on both sides: 85 of the 375 test reports with text have an identical
report in train. Such a query's twin in the pool shares its text and, nearly always, its labels, so
any text method finds it at rank 1; that leaks across the split and inflates every number. So each
result is also given on

- ``novel``: queries whose report text, after :func:`report_key`, is identical to **no** pool
  report's (an empty or missing query text has nothing to leak and counts as novel; empty pool
  reports are never a match);
- ``non-normal``: queries whose labels are not exactly ``("normal",)`` (normal studies are the
  largest class and the most templated; leaving them out shows how a method does on findings);

next to ``all`` (every query).

:func:`report_key` reuses :func:`cxrsearch.text.report.normalise_report`, the key training
already uses for "identical report": lower-cased ``\\w+`` words joined by single spaces (so case,
punctuation and whitespace never make two reports differ; any word, number or ``XXXX`` token does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cxrsearch.errors import ConfigError
from cxrsearch.text.report import normalise_report

SUBSETS = ("all", "novel", "non-normal")
NORMAL_ONLY = ("normal",)


def report_key(text: str | None) -> str:
    """The normalised report text under which two reports count as identical (``""`` for none)."""
    return normalise_report(text) or ""


def novel_queries(
    query_uids: Sequence[str], query_texts: Sequence[str | None], pool_texts: Iterable[str | None]
) -> set[str]:
    """The query study ids whose :func:`report_key` matches no pool report's (see the module doc)."""
    if len(query_uids) != len(query_texts):
        raise ConfigError(f"subsets: {len(query_uids)} query ids but {len(query_texts)} texts")
    pool_keys = {key for key in map(report_key, pool_texts) if key}
    return {uid for uid, text in zip(query_uids, query_texts) if report_key(text) not in pool_keys}


def subset_masks(
    query_uids: Sequence[str],
    query_texts: Sequence[str | None],
    query_label_sets: Sequence[Sequence[str]],
    pool_texts: Iterable[str | None],
) -> dict[str, np.ndarray]:
    """``{"all", "novel", "non-normal"}`` -> ``[Q]`` bool mask over the queries, in query order."""
    if not len(query_uids) == len(query_texts) == len(query_label_sets):
        raise ConfigError(
            f"subsets: {len(query_uids)} query ids, {len(query_texts)} texts and "
            f"{len(query_label_sets)} label sets do not line up"
        )
    novel = novel_queries(query_uids, query_texts, pool_texts)
    return {
        "all": np.ones(len(query_uids), dtype=bool),
        "novel": np.array([uid in novel for uid in query_uids], dtype=bool),
        "non-normal": np.array([tuple(labels) != NORMAL_ONLY for labels in query_label_sets], dtype=bool),
    }
