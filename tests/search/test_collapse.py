"""``collapse``: one shown hit per identical report text, the copies listed under it."""

from __future__ import annotations

import pytest

from cxrsearch.search.collapse import CollapsedHit, collapse, report_key, uncollapsed
from cxrsearch.search.results import hit_record
from cxrsearch.store.base import Hit

NORMAL = "No acute cardiopulmonary abnormality."


def _hit(n: int, findings: str | None, impression: str | None, study: str | None = None) -> Hit:
    return Hit(
        id=f"id-{n}",
        score=1.0 - n / 100,
        payload={"study_id": study or f"CXR{n}", "findings": findings, "impression": impression},
    )


def test_identical_reports_are_one_group_under_their_best_hit():
    hits = [
        _hit(1, "Heart size normal.", NORMAL),
        _hit(2, "Large right effusion.", "Effusion."),
        _hit(3, "heart size  normal", "No acute cardiopulmonary abnormality", study="CXR30"),  # case, spaces, dots
        _hit(4, "Heart size normal.", NORMAL, study="CXR1"),  # the other radiograph of study 1
        _hit(5, None, "Large right effusion. Effusion."),  # same words once findings + impression are joined
    ]
    groups = collapse(hits, k=10)
    assert [g.id for g in groups] == ["id-1", "id-2"]
    assert groups[0].identical == ("id-3", "id-4") and groups[0].identical_studies == ("CXR30", "CXR1")
    assert groups[1].identical == ("id-5",) and groups[1].identical_studies == ("CXR5",)
    assert groups[0].hit is hits[0] and groups[0].score == hits[0].score and groups[0].payload is hits[0].payload
    keys = {report_key(g.payload) for g in groups}
    assert len(keys) == len(groups)  # what a user relies on: no two shown hits read the same


def test_report_less_hits_are_never_merged():
    hits = [
        _hit(1, None, None),
        _hit(2, "", "  "),
        _hit(3, None, None),
        _hit(4, "...", None),
        _hit(5, "A.", None),
        _hit(6, "a", None),
    ]
    groups = collapse(hits, k=10)
    assert [g.id for g in groups] == ["id-1", "id-2", "id-3", "id-4", "id-5"]
    assert all(g.identical == () for g in groups[:4]) and groups[4].identical == ("id-6",)
    assert report_key({}) is None and report_key({"impression": "Normal chest."}) == "normal chest"


def test_k_groups_are_kept_and_later_copies_still_join_them():
    hits = [_hit(i, f"Report {i % 4}.", None) for i in range(12)]  # four distinct reports, three hits each
    groups = collapse(hits, k=3)
    assert [g.id for g in groups] == ["id-0", "id-1", "id-2"]
    assert [g.identical for g in groups] == [("id-4", "id-8"), ("id-5", "id-9"), ("id-6", "id-10")]
    assert len(collapse(hits, k=10)) == 4
    assert collapse([], k=5) == []
    with pytest.raises(ValueError):
        collapse(hits, k=0)


def test_hit_record_lists_the_identical_hits():
    hits = [_hit(1, "Same.", None), _hit(2, "Same.", None, study="CXR9"), _hit(3, "Other.", None)]
    first, second = (hit_record(g, rank) for rank, g in enumerate(collapse(hits, k=5), start=1))
    assert first["id"] == "id-1" and first["rank"] == 1
    assert first["identical"] == [{"id": "id-2", "study_id": "CXR9"}] and first["identical_count"] == 1
    assert second["identical"] == [] and second["identical_count"] == 0
    plain = hit_record(hits[1], 2)  # a bare Hit (and --no-collapse) has the same keys
    assert set(plain) == set(first) and plain["identical"] == [] and plain["identical_count"] == 0
    assert [hit_record(g, 1)["identical_count"] for g in uncollapsed(hits)] == [0, 0, 0]
    assert all(isinstance(g, CollapsedHit) for g in uncollapsed(hits))


def test_exact_ties_show_the_same_hits_whatever_order_the_engine_gave_them():
    """Copies of one report often score exactly alike, and the engine orders exact ties either way:
    the group shows its smallest point id, tied groups come in id order, and nothing else moves."""
    same = [Hit(f"id-{c}", 0.5, {"study_id": f"CXR{c}", "findings": "Same words."}) for c in "bca"]
    other = [Hit(f"id-{c}", 0.5, {"study_id": f"CXR{c}", "findings": f"Other {c}."}) for c in "zy"]
    best = Hit("id-w", 0.9, {"study_id": "CXRw", "findings": "Best."})
    worse = Hit("id-x", 0.1, {"study_id": "CXRx", "findings": "Worse."})
    for order in ([best, *same, *other, worse], [best, *reversed(other), *reversed(same), worse]):
        groups = collapse(order, k=10)
        assert [g.id for g in groups] == ["id-w", "id-a", "id-y", "id-z", "id-x"]
        assert set(groups[1].identical) == {"id-b", "id-c"}
        flat = uncollapsed(order)
        assert [g.id for g in flat] == ["id-w", "id-a", "id-b", "id-c", "id-y", "id-z", "id-x"]
    # only neighbours of equal score move: an order that is not by score (MMR's) stays
    mmr = [Hit("id-b", 0.2, {}), Hit("id-a", 0.9, {}), Hit("id-d", 0.5, {}), Hit("id-c", 0.5, {})]
    assert [g.id for g in uncollapsed(mmr)] == ["id-b", "id-a", "id-c", "id-d"]
    assert [g.id for g in collapse(mmr, k=10)] == ["id-b", "id-a", "id-c", "id-d"]
    # a copy that scores less than the group's best never heads it
    uneven = [Hit("id-b", 0.6, {"findings": "Same."}), Hit("id-a", 0.5, {"findings": "Same."})]
    (group,) = collapse(uneven, k=5)
    assert group.id == "id-b" and group.identical == ("id-a",)


def test_a_search_fetches_deeper_when_copies_fill_the_first_fetch():
    """Asked for k groups: k * COLLAPSE_FETCH hits first, then MAX_K once if those were all copies
    (a collection holding k distinct reports shows k); a fetch that came back short is not repeated."""
    from cxrsearch.search.collapse import COLLAPSE_FETCH, fetch_for_collapse
    from cxrsearch.search.spec import MAX_K

    corpus = [_hit(i, "Same words.", None) for i in range(40)] + [_hit(40 + i, f"Other {i}.", None) for i in range(5)]
    asked: list[int] = []

    def run(limit: int) -> list[Hit]:
        asked.append(limit)
        return corpus[:limit]

    hits = fetch_for_collapse(run, 3)
    assert asked == [3 * COLLAPSE_FETCH, MAX_K] and len(collapse(hits, 3)) == 3
    asked.clear()
    assert len(fetch_for_collapse(run, 1)) == COLLAPSE_FETCH and asked == [COLLAPSE_FETCH]  # one group was enough
    asked.clear()
    fetch_for_collapse(run, 20)  # 100 asked, 45 came back: the collection has no more
    assert asked == [20 * COLLAPSE_FETCH]
    asked.clear()
    assert len(fetch_for_collapse(run, 3, collapse_on=False)) == 3 and asked == [3]
