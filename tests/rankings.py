"""Comparing search results the way users rely on them, on any CPU (see docs/architecture.md, Testing).

Two code paths (two store backends, a store and numpy, batched and single encoding) agree on a score
only up to float rounding, and that rounding depends on the CPU's kernels (AVX2 or AVX-512) and on the
thread count. So which of two (nearly) tied hits comes first, and which of them makes the cut at the
last rank, is not a property of cxrsearch. These helpers assert what is:

- :func:`assert_matches_oracle`: against an oracle (the score of every candidate: numpy's exact one,
  or another search's full ranking), each hit has its own score and the hit at rank ``r`` scores as the
  oracle's ``r``-th best, so nothing better was left out and the order is right up to ``atol``. The
  check is local to each rank, so it stays strict where scores are dense (the tiny test checkpoint's
  cosines sit a few 1e-6 apart): prefer it wherever the oracle can be had.
- :func:`assert_same_ranking`: two lists cut at the same limit (an RRF fusion, whose scores change with
  the prefetch depth, so no deeper list is comparable): the same score at each rank and, in each group
  of ranks whose scores lie within ``atol`` of their neighbour, the same hits as a set.

``atol`` must be far above the rounding (about 1e-7 for float32 cosines) and below the gaps that tell
hits apart (a wrong, missing or misordered hit moves a score by far more).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def _pairs(hits: Iterable[Any]) -> list[tuple[str, float]]:
    """``(id, score)`` of hits given as objects with ``.id``/``.score``, dicts or pairs."""
    out = []
    for hit in hits:
        if isinstance(hit, Mapping):
            out.append((hit["id"], float(hit["score"])))
        elif isinstance(hit, tuple):
            out.append((hit[0], float(hit[1])))
        else:
            out.append((hit.id, float(hit.score)))
    return out


def tie_groups(scores: Sequence[float], atol: float) -> list[range]:
    """Ranks of a descending score list cut into groups: a rank joins the previous one's group when
    their scores differ by at most ``atol``."""
    groups: list[range] = []
    start = 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or abs(scores[i - 1] - scores[i]) > atol:
            groups.append(range(start, i))
            start = i
    return groups


def assert_same_ranking(hits: Iterable[Any], expected: Iterable[Any], atol: float = 1e-5, *, cut: bool = True) -> None:
    """``hits`` rank like ``expected``: same length, scores within ``atol`` at each rank, the same ids
    in each tie group. ``cut``: both lists stop at a limit, so the lowest group may have been cut
    there and which of its tied points made it may differ (pass ``cut=False`` when both hold every
    match). Groups chain (a, b within ``atol`` and b, c within ``atol``: one group), so use it on
    scores whose distinct values lie well apart, such as RRF's."""
    got, want = _pairs(hits), _pairs(expected)
    assert len(got) == len(want), f"{len(got)} hits, expected {len(want)}"
    assert len({i for i, _ in got}) == len(got), f"a point came back twice: {[i for i, _ in got]}"
    np.testing.assert_allclose(
        [s for _, s in got], [s for _, s in want], rtol=0, atol=atol, err_msg="scores differ at some rank"
    )
    groups = tie_groups([s for _, s in want], atol)
    for n, group in enumerate(groups):
        if cut and n == len(groups) - 1:
            continue
        assert {got[r][0] for r in group} == {want[r][0] for r in group}, (
            f"ranks {group.start + 1}-{group.stop}: other points at the same score\n got  {got}\n want {want}"
        )


def assert_matches_oracle(hits: Iterable[Any], oracle: Mapping[str, float], limit: int, atol: float = 1e-5) -> None:
    """``hits`` are an exact top-``limit`` of ``oracle`` (every eligible candidate's exact score):
    ``min(limit, len(oracle))`` distinct eligible hits, each with its own exact score, the hit at each
    rank scoring as the oracle's best at that rank. Ties (within ``atol``) may come in any order, and
    at the last rank any of the tied candidates may have made the cut."""
    got = _pairs(hits)
    ids = [i for i, _ in got]
    assert len(got) == min(limit, len(oracle)), f"{len(got)} hits, expected {min(limit, len(oracle))}"
    assert len(set(ids)) == len(ids), f"a point came back twice: {ids}"
    strangers = [i for i in ids if i not in oracle]
    assert not strangers, f"hits that are not eligible candidates: {strangers}"
    np.testing.assert_allclose(
        [s for _, s in got], [oracle[i] for i in ids], rtol=0, atol=atol, err_msg="a hit's score is not its exact score"
    )
    best = sorted(oracle.values(), reverse=True)[: len(got)]
    np.testing.assert_allclose(
        [s for _, s in got],
        best,
        rtol=0,
        atol=atol,
        err_msg="a better candidate was left out, or the hits are out of order",
    )


def _copies(hit: Mapping[str, Any]) -> frozenset[str]:
    """A shown hit with the identical reports collapsed under it, by id."""
    return frozenset([hit["id"], *(m["id"] for m in hit.get("identical") or ())])


def assert_same_hits(got: Any, want: Any, atol: float = 1e-6) -> None:
    """Two ``search --json`` answers to one query (two runs, or the CLI and ``/api/search``) hold the
    same hits: equal records rank by rank, except where scores tie exactly. Copies of one report
    score alike, so which copy heads its collapsed group, and the order of tied hits, may differ
    between runs (the engine orders exact ties either way); there the same groups must appear."""
    if isinstance(want, Mapping):  # with --facets: {"hits": [...], "facets": {...}}
        assert isinstance(got, Mapping) and set(got) == set(want)
        assert got["facets"] == want["facets"]
        got, want = got["hits"], want["hits"]
    assert len(got) == len(want), f"{len(got)} hits, expected {len(want)}"
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want], rtol=0, atol=atol)
    for group in tie_groups([h["score"] for h in want], atol):
        tied = len(group) > 1 or any(want[r].get("identical") for r in group)
        if tied:
            assert {_copies(got[r]) for r in group} == {_copies(want[r]) for r in group}, (
                f"ranks {group.start + 1}-{group.stop}: other hits at the same score"
            )
        else:
            (r,) = group
            assert got[r] == want[r], f"rank {r + 1} differs:\n got  {got[r]}\n want {want[r]}"
