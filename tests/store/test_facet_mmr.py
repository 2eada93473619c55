"""``Store.facet`` and ``Store.search_diverse`` (MMR) on every backend, against numpy oracles, so that
the embedded store and a server count and diversify the same way (and mean the same ``diversity``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.store import Filter, Point, Store, load_schema, point_id
from cxrsearch.store.checks import prefetch_limit
from tests.rankings import assert_same_ranking

from .conftest import DIM, LABELS

FILTERS = {
    "none": None,
    "label": Filter(all_labels=("cardiomegaly",)),
    "not": Filter(not_labels=("normal", "opacity")),
    "view-split": Filter(view="PA", split="train"),
    "truth": Filter(any_labels=("effusion", "nodule"), truth=True),
    "exclude-studies": Filter(exclude_study_ids=tuple(f"CXR{i}" for i in range(1, 60))),
}
TIE = 1e-5


def _oracle_counts(cases, name: str, key: str, flt: Filter | None) -> Counter:
    """Value -> number of passing points holding it, computed from the synthetic arrays."""
    ok = cases.mask(flt)
    counts: Counter = Counter()
    for i in np.flatnonzero(ok):
        if key in ("labels", "labels_true"):
            table = cases.labels if key == "labels" else cases.labels_true
            counts.update(lab for lab, on in zip(LABELS, table[i]) if on)
        elif key == "view":
            counts.update([cases.view[i]] if cases.view[i] else [])
        else:
            counts.update([str({"split": cases.split, "study_id": cases.study}[key][i])])
    return counts


def _ranked(counts: Counter, limit: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


@pytest.mark.parametrize("key", ["labels", "labels_true", "view", "split"])
@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_facet_counts_are_exact(shared, key, flt):
    store, name, cases = shared
    assert isinstance(store, Store)
    got = store.facet(name, key, flt)
    assert got == _ranked(_oracle_counts(cases, name, key, flt), 50)
    truth = key == "labels_true"
    if key in ("labels", "labels_true") and (flt is None or flt.truth == truth):
        base = flt or Filter(truth=truth)
        for value, count in got[:3]:  # what a user reads a count as: the count of the narrower filter
            narrower = replace(base, all_labels=tuple(dict.fromkeys((*base.all_labels, value))))
            assert store.count(name, narrower) == count


def test_facet_limit_cuts_ties_by_value(shared):
    """Every study has two points: all counts tie, so the cut keeps the smallest study ids."""
    store, name, cases = shared
    flt = Filter(split="val")
    got = store.facet(name, "study_id", flt, limit=7)
    assert got == _ranked(_oracle_counts(cases, name, "study_id", flt), 7)
    assert len(got) == 7 and [v for v, _ in got] == sorted(v for v, _ in got)
    assert store.facet(name, "labels", limit=2) == _ranked(_oracle_counts(cases, name, "labels", None), 2)
    nothing = Filter(all_labels=("normal",), study_ids=("CXR-none",))
    assert store.facet(name, "labels", nothing) == []


def test_facet_needs_an_indexed_keyword_field(shared):
    store, name, _ = shared
    with pytest.raises(StoreError, match=r"payload field 'impression'.*no keyword payload index") as err:
        store.facet(name, "impression")
    assert "\n" not in str(err.value) and "labels" in str(err.value)
    with pytest.raises(QueryError, match="limit"):
        store.facet(name, "labels", limit=0)
    with pytest.raises(StoreError, match="no collection 'nope'"):
        store.facet("nope", "labels")


# -- MMR ----------------------------------------------------------------------------------------------


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def _assert_is_mmr(
    hits,
    cases,
    name: str,
    vector_name: str,
    query: np.ndarray,
    flt: Filter | None,
    limit: int,
    diversity: float,
    pool: int,
    atol: float = 1e-4,
) -> None:
    """Each hit is a greedy MMR choice: among the ``pool`` nearest passing candidates still pending,
    it maximises ``(1 - d) * cos(query) - d * max cos(chosen)`` (up to ``atol``, so ties may go either way)."""
    oracle = cases.exact_scores(name, vector_name, query, flt)
    ids = list(cases.ids(name))
    vectors = _unit(cases.vectors[vector_name])
    by_id = {pid: vectors[ids.index(pid)] for pid in oracle}
    candidates = sorted(oracle, key=lambda pid: -oracle[pid])[:pool]
    got = [h.id for h in hits]
    assert len(got) == min(limit, len(candidates)) and len(set(got)) == len(got)
    assert set(got) <= set(candidates), "a hit outside the candidate pool"
    np.testing.assert_allclose(
        [h.score for h in hits],
        [oracle[i] for i in got],
        rtol=0,
        atol=TIE,
        err_msg="a diverse hit's score is not its cosine to the query",
    )
    chosen: list[str] = []
    for pid in got:

        def objective(c: str) -> float:
            redundancy = max((float(by_id[c] @ by_id[s]) for s in chosen), default=0.0)
            return oracle[c] if not chosen else (1 - diversity) * oracle[c] - diversity * redundancy

        pending = [c for c in candidates if c not in chosen]
        best = max(objective(c) for c in pending)
        assert objective(pid) >= best - atol, f"rank {len(chosen) + 1}: {pid} is not an MMR choice"
        chosen.append(pid)


@pytest.mark.parametrize(
    "flt", [FILTERS["none"], FILTERS["label"], FILTERS["view-split"]], ids=["none", "label", "view-split"]
)
@pytest.mark.parametrize("vector_name", ["image", "joint"])
def test_diversity_zero_is_plain_search(shared, flt, vector_name):
    store, name, cases = shared
    query = cases.vectors["text"][3] + 0.1
    plain = store.search(name, vector_name, query, flt, limit=10)
    diverse = store.search_diverse(name, vector_name, query, flt, limit=10, diversity=0.0)
    assert_same_ranking(diverse, plain, atol=TIE)
    assert all(flt is None or flt.matches(h.payload) for h in diverse)


@pytest.mark.parametrize("diversity", [0.3, 0.7, 1.0])
@pytest.mark.parametrize("flt", [FILTERS["none"], FILTERS["not"]], ids=["none", "not"])
def test_diverse_search_is_mmr_over_the_candidates(shared, flt, diversity):
    store, name, cases = shared
    query = cases.vectors["joint"][11]
    hits = store.search_diverse(name, "joint", query, flt, limit=8, diversity=diversity, candidates=40)
    _assert_is_mmr(hits, cases, name, "joint", query, flt, 8, diversity, 40)
    assert all(flt is None or flt.matches(h.payload) for h in hits)
    default = store.search_diverse(name, "joint", query, flt, limit=8, diversity=diversity)
    _assert_is_mmr(default, cases, name, "joint", query, flt, 8, diversity, prefetch_limit(8))


def _near_duplicates(store, collection: str) -> tuple[np.ndarray, list[str]]:
    """Three identical vectors nearest the query, then distinct ones a little further away."""
    store.create_collection(collection, load_schema("cases"), DIM, 4)
    rng = np.random.default_rng(3)
    query = np.zeros(DIM, dtype=np.float32)
    query[0] = 1.0
    twin = query.copy()
    twin[1] = 0.2
    points, twins = [], []
    for i in range(3):
        pid = point_id(collection, f"twin-{i}")
        twins.append(pid)
        points.append(Point(pid, {"joint": twin, "image": twin}, {"study_id": f"T{i}", "labels": ["normal"]}))
    for i in range(12):
        other = query + 0.9 * rng.normal(size=DIM).astype(np.float32)
        points.append(
            Point(
                point_id(collection, f"other-{i}"),
                {"joint": other, "image": other},
                {"study_id": f"O{i}", "labels": ["nodule"] if i % 3 == 0 else ["normal"]},
            )
        )
    store.upsert(collection, points)
    return query, twins


def test_high_diversity_avoids_near_duplicates(store, collection):
    query, twins = _near_duplicates(store, collection)
    plain = store.search(collection, "joint", query, limit=3)
    assert {h.id for h in plain} == set(twins)  # plain search: the three copies fill the top 3
    for diversity in (0.0, 1e-9):
        assert {h.id for h in store.search_diverse(collection, "joint", query, limit=3, diversity=diversity)} == set(
            twins
        )
    for diversity in (0.5, 0.8, 1.0):
        diverse = store.search_diverse(collection, "joint", query, limit=3, diversity=diversity)
        assert len(diverse) == 3
        assert diverse[0].id in twins  # the most relevant point comes first
        assert sum(h.id in twins for h in diverse) == 1, (diversity, [h.payload["study_id"] for h in diverse])
    filtered = store.search_diverse(collection, "image", query, Filter(any_labels=("nodule",)), limit=3, diversity=0.8)
    assert filtered and all("nodule" in h.payload["labels"] for h in filtered)


def test_diverse_search_checks_its_arguments(store, collection):
    query, _ = _near_duplicates(store, collection)
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(QueryError, match="diversity must be a number from 0"):
            store.search_diverse(collection, "joint", query, diversity=bad)
    with pytest.raises(QueryError, match="candidates"):
        store.search_diverse(collection, "joint", query, candidates=0)
    with pytest.raises(QueryError, match="no vector 'bogus'"):
        store.search_diverse(collection, "bogus", query)
    for sparse in load_schema("cases").sparse_names:  # MMR compares candidates by a dense vector
        with pytest.raises(QueryError, match=f"{sparse!r} .* is sparse"):
            store.search_diverse(collection, sparse, query)
    # fewer candidates than the limit: the limit wins (MMR must have limit points to choose)
    assert len(store.search_diverse(collection, "joint", query, limit=5, candidates=2)) == 5


def test_embedded_store_counts_and_diversifies_optimised_segments(tmp_path, cases):
    """After ``close()`` the points live in optimised (int8-quantised) segments: same answers."""
    from cxrsearch.store.edge import EdgeStore

    name = "cases"
    with EdgeStore(tmp_path / "store") as store:
        store.create_collection(name, load_schema("cases"), DIM, 4)
        store.upsert(name, cases.points(name), batch=64)
    with EdgeStore(tmp_path / "store") as store:
        flt = FILTERS["not"]
        assert store.facet(name, "labels_true", flt) == _ranked(_oracle_counts(cases, name, "labels_true", flt), 50)
        query = cases.vectors["joint"][11]
        hits = store.search_diverse(name, "joint", query, flt, limit=8, diversity=0.7, candidates=40)
        _assert_is_mmr(hits, cases, name, "joint", query, flt, 8, 0.7, 40)
