"""Laterality queries: "left pleural effusion" should find effusions on the left.

The label vocabulary has no side, so short-v1 cannot tell a left from a right effusion, and a search
ranked by the label vector alone does not either. The Open-i MeSH major terms do carry it, as a
qualifier: ``Pleural Effusion/left/small``, ``Pulmonary Atelectasis/base/bilateral``. This protocol
is made from them, not written by hand:

- **Queries**: for every (label, side) pair, side one of ``left``, ``right``, ``bilateral``, held
  by at least ``min_studies`` studies (``normal`` excluded), the text ``"<side> <label>"``.
- **Relevance**: a study is relevant when one of its MeSH major terms maps to the label
  (:func:`~cxrsearch.data.labels.labels_from_mesh`) and carries the side as a qualifier; the
  label alone (any side) is reported beside it.
- **Split**: pairs in sorted order alternate ``dev``, ``test``.

The pairs depend on the collection's reports, so the set is computed, not versioned; on the 3,955
Open-i reports with ``min_studies=15`` it is 31 pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cxrsearch.data.labels import NORMAL, labels_from_mesh, split_term

SIDES = ("left", "right", "bilateral")
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class SideQuery:
    """One laterality query: ``text`` (``"left pleural effusion"``) asks for ``label`` on ``side``."""

    label: str
    side: str
    split: str

    @property
    def text(self) -> str:
        return f"{self.side} {self.label}"


def sided_labels(mesh_major: Iterable[str]) -> frozenset[tuple[str, str]]:
    """The (label, side) pairs of a report's MeSH major terms: ``"Pleural Effusion/left/small"``
    gives ``("pleural effusion", "left")``."""
    found: set[tuple[str, str]] = set()
    for term in mesh_major:
        _, qualifiers = split_term(term)
        sides = [side for side in SIDES if side in qualifiers]
        if not sides:
            continue
        for label in labels_from_mesh([term]):
            if label != NORMAL:
                found.update((label, side) for side in sides)
    return frozenset(found)


def side_queries(
    mesh_major: Sequence[Iterable[str]], min_studies: int = 15, split: str | None = None
) -> list[SideQuery]:
    """The laterality queries of a corpus (one MeSH major term list per study), ``split`` only when
    given."""
    counts = Counter(pair for terms in mesh_major for pair in sided_labels(terms))
    pairs = sorted(pair for pair, n in counts.items() if n >= min_studies)
    queries = [SideQuery(label, side, SPLITS[i % 2]) for i, (label, side) in enumerate(pairs)]
    return [q for q in queries if split is None or q.split == split]
