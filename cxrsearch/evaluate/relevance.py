"""When is a retrieved study relevant to a query study? Decided from MeSH-derived labels only.

Relevance never looks at model predictions: both sides use ``Study.labels`` (the vocabulary labels
of the manual MeSH *major* terms, see docs/labels.md).

- **Primary label** of a query: the query label with the fewest studies in the **train** split (the
  most specific finding it carries); ties go to the earlier label in vocabulary order. A ``normal``
  study's only label is ``normal`` (the vocabulary gives ``normal`` only when every term is normal).
  A study with no label (not indexed, or only findings outside the vocabulary) has no primary label
  and is never a query.
- **strict**: a hit is relevant when its labels include the query's primary label. Because
  ``normal`` never co-occurs with another label, ``normal`` hits count only for ``normal`` queries.
- **lenient** (the seed's rule, for comparison): a hit is relevant when it shares any label with the
  query, ``normal`` included.
- **Gain** (for nDCG): the Jaccard similarity of the two label sets, ``|Q & H| / |Q | H|``, for
  relevant hits and 0 otherwise (under lenient every hit sharing a label is relevant, so the gain
  is plain Jaccard; under strict a hit without the primary label gains nothing even if it shares
  another label).
- The query's **own study** is never relevant and is left out of the pool's relevant count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cxrsearch.errors import ConfigError
from cxrsearch.evaluate.metrics import Judged

RELEVANCE_MODES = ("strict", "lenient")


def label_counts(label_sets: Iterable[Sequence[str]]) -> dict[str, int]:
    """How many studies carry each label (pass the **train** split's ``Study.labels``)."""
    return dict(Counter(label for labels in label_sets for label in labels))


def primary_label(labels: Sequence[str], train_counts: Mapping[str, int], vocabulary: Sequence[str]) -> str | None:
    """The query's rarest label in the train split (ties: vocabulary order); ``None`` without labels."""
    if not labels:
        return None
    order = {name: i for i, name in enumerate(vocabulary)}
    unknown = [label for label in labels if label not in order]
    if unknown:
        raise ConfigError(f"relevance: labels {unknown} are not in the vocabulary")
    return min(labels, key=lambda label: (train_counts.get(label, 0), order[label]))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """``|A & B| / |A | B|`` of two label sets (0.0 when both are empty)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 0.0


@dataclass(frozen=True)
class Query:
    """A query study: its ``uid``, MeSH-derived ``labels`` and ``primary`` label (see module doc)."""

    uid: str
    labels: tuple[str, ...]
    primary: str


class Pool:
    """The studies a search runs over, as a label matrix, able to judge rankings against it.

    ``uids``: the pool's study ids (unique); ``label_sets``: each study's labels; ``vocabulary``: the
    label order (``label_names()``).
    """

    def __init__(self, uids: Sequence[str], label_sets: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> None:
        if len(uids) != len(label_sets):
            raise ConfigError(f"relevance: {len(uids)} uids but {len(label_sets)} label sets")
        if len(set(uids)) != len(uids):
            raise ConfigError("relevance: the pool lists a study twice")
        self.uids = tuple(uids)
        self.vocabulary = tuple(vocabulary)
        self._column = {name: j for j, name in enumerate(self.vocabulary)}
        self._row = {uid: i for i, uid in enumerate(self.uids)}
        self.matrix = np.zeros((len(uids), len(self.vocabulary)), dtype=bool)
        for i, labels in enumerate(label_sets):
            self.matrix[i, self._columns(labels)] = True
        self._sizes = self.matrix.sum(axis=1)

    def _columns(self, labels: Sequence[str]) -> list[int]:
        try:
            return [self._column[label] for label in labels]
        except KeyError as exc:
            raise ConfigError(f"relevance: label {exc.args[0]!r} is not in the vocabulary") from exc

    def __len__(self) -> int:
        return len(self.uids)

    def gains(self, query: Query, mode: str) -> np.ndarray:
        """``[N]`` gain of every pool study for ``query`` (0 where not relevant; own study 0)."""
        if mode not in RELEVANCE_MODES:
            raise ConfigError(f"relevance: mode must be one of {RELEVANCE_MODES}, not {mode!r}")
        q = np.zeros(len(self.vocabulary), dtype=bool)
        q[self._columns(query.labels)] = True
        inter = (self.matrix & q).sum(axis=1)
        union = self._sizes + q.sum() - inter
        jac = np.divide(inter, union, out=np.zeros(len(self), dtype=np.float64), where=union > 0)
        relevant = self.matrix[:, self._column[query.primary]] if mode == "strict" else inter > 0
        out = np.where(relevant, jac, 0.0)
        own = self._row.get(query.uid)
        if own is not None:
            out[own] = 0.0
        return out

    def judge(self, query: Query, ranked_uids: Sequence[str], mode: str, depth: int) -> Judged:
        """Judge the first ``depth`` hits of a ranking (study ids, best first) for ``query``.

        A uid outside the pool is an error (the ranking came from another collection); the query's
        own study, if a ranking returns it, is judged irrelevant (gain 0).
        """
        gains_all = self.gains(query, mode)
        rows = []
        for uid in ranked_uids[:depth]:
            row = self._row.get(uid)
            if row is None:
                raise ConfigError(f"relevance: ranked study {uid!r} is not in the searched pool")
            rows.append(row)
        gains = gains_all[rows] if rows else np.zeros(0)
        ideal = np.sort(gains_all)[::-1][:depth]
        return Judged(relevant=gains > 0, gains=gains, n_relevant=int(np.count_nonzero(gains_all)), ideal_gains=ideal)
