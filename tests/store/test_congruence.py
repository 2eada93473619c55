"""The same assertions on every backend (embedded qdrant-edge, qdrant-client in-memory, a real server),
checked against a numpy brute-force computation over the same synthetic cases."""

from __future__ import annotations

import numpy as np
import pytest

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.store import RRF_K, Filter, Point, Store, load_schema, point_id
from cxrsearch.store.checks import prefetch_limit
from tests.rankings import assert_matches_oracle

from .conftest import DIM, LABELS

FILTERS = {
    "none": None,
    "all-one": Filter(all_labels=("cardiomegaly",)),
    "all-two": Filter(all_labels=("opacity", "normal")),
    "any": Filter(any_labels=("effusion", "nodule")),
    "not": Filter(not_labels=("normal", "opacity")),
    "view": Filter(view="LATERAL"),
    "split": Filter(split="test"),
    "truth": Filter(all_labels=("cardiomegaly",), truth=True),
    "truth-not": Filter(not_labels=("normal",), truth=True),
    "exclude-studies": Filter(exclude_study_ids=tuple(f"CXR{i}" for i in range(1, 60))),
    "studies": Filter(study_ids=("CXR3", "CXR17", "CXR44", "CXR90")),
    "combined": Filter(any_labels=("cardiomegaly", "opacity"), not_labels=("nodule",), view="PA", split="train"),
}


def test_create_is_idempotent_and_checks_the_size(store, collection):
    assert isinstance(store, Store)  # the protocol the rest of cxrsearch codes against
    schema = load_schema("cases")
    assert store.create_collection(collection, schema, DIM, 4) is True
    assert store.create_collection(collection, schema, DIM, 4) is False
    with pytest.raises(StoreError, match=rf"{DIM}-d 'image' vectors, not {DIM + 1}-d"):
        store.create_collection(collection, schema, DIM + 1, 4)
    # Same size, another schema: a no-op too; the collection keeps the schema it was created with.
    assert store.create_collection(collection, load_schema("cases-hnsw"), DIM, 4) is False
    info = store.collection_info(collection)
    assert collection in store.list_collections()
    assert info.points_count == 0
    assert info.vector_sizes == {"image": DIM, "text": DIM, "joint": DIM, "label_probs": 4}
    assert info.schema == schema


def test_upsert_count_and_deterministic_ids(filled):
    store, name, cases = filled
    assert store.count(name) == len(cases.keys)
    # Re-upserting the same cases (same deterministic ids) replaces, never duplicates.
    assert store.upsert(name, cases.points(name)[:50]) == 50
    assert store.count(name) == len(cases.keys)
    assert point_id(name, cases.keys[0]) == point_id(name, cases.keys[0]) != point_id(name + "x", cases.keys[0])


def test_points_without_an_image_vector(shared):
    store, name, cases = shared
    no_image = cases.ids(name)[~cases.has_image]
    assert len(no_image) > 0
    [point] = store.retrieve(name, [no_image[0]], with_vectors=True)
    assert set(point.vectors) == {"text", "joint"}
    hits = store.search(name, "image", cases.vectors["joint"][0], limit=len(cases.keys))
    assert len(hits) == int(cases.has_image.sum())
    assert not {h.id for h in hits} & set(no_image)


@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_count_and_scroll_follow_the_filter(shared, flt):
    store, name, cases = shared
    expected = set(cases.ids(name)[cases.mask(flt)])
    assert store.count(name, flt) == len(expected)
    scrolled = list(store.scroll(name, flt, batch=16))
    assert {p.id for p in scrolled} == expected
    assert len(scrolled) == len(expected)
    assert all(flt is None or flt.matches(p.payload) for p in scrolled)


# A store scores in float32 with the CPU's SIMD kernels, the oracle in float64: scores agree to about
# 1e-7, so candidates within TIE of each other may come in either order (tests/rankings.py).
TIE = 1e-5


@pytest.mark.parametrize("vector_name", ["image", "text", "joint"])
@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_search_equals_numpy_exact_top_k(shared, flt, vector_name):
    store, name, cases = shared
    for q in range(3):
        query = cases.vectors["text"][q] + 0.1
        hits = store.search(name, vector_name, query, flt, limit=10)
        assert_matches_oracle(hits, cases.exact_scores(name, vector_name, query, flt), limit=10, atol=TIE)
        assert all(flt is None or flt.matches(h.payload) for h in hits)


def _rrf_bounds(oracles: list[dict[str, float]], depth: int) -> dict[str, tuple[float, float]]:
    """Point id -> lowest and highest RRF score it can get from prefetching the top-``depth`` of each
    oracle. Where a candidate is within TIE of others, rounding decides its rank among them (and, at
    the prefetch cut, whether it is fetched at all); elsewhere both bounds are its exact RRF score."""
    bounds: dict[str, list[float]] = {}
    for oracle in oracles:
        ids, scores = list(oracle), np.array(list(oracle.values()))
        surely_above = (scores[None, :] > scores[:, None] + TIE).sum(axis=1)
        maybe_above = (scores[None, :] >= scores[:, None] - TIE).sum(axis=1) - 1  # not itself
        for pid, best_rank, worst_rank in zip(ids, surely_above, maybe_above):
            low_high = bounds.setdefault(pid, [0.0, 0.0])
            low_high[0] += 1.0 / (RRF_K + worst_rank) if worst_rank < depth else 0.0
            low_high[1] += 1.0 / (RRF_K + best_rank) if best_rank < depth else 0.0
    return {pid: (low, high) for pid, (low, high) in bounds.items() if high > 0}


@pytest.mark.parametrize(
    "flt",
    [FILTERS["none"], FILTERS["all-one"], FILTERS["combined"], FILTERS["truth-not"]],
    ids=["none", "all-one", "combined", "truth-not"],
)
def test_fused_search_is_rrf_of_exact_lists(shared, flt):
    store, name, cases = shared
    query = cases.vectors["joint"][5]
    limit = 8
    bounds = _rrf_bounds([cases.exact_scores(name, v, query, flt) for v in ("image", "text")], prefetch_limit(limit))
    hits = store.search_fused(name, [("image", query), ("text", query)], flt, limit=limit)
    eps = 1e-7  # RRF scores are ~1/60; neighbouring ranks differ by ~3e-4
    ids = [h.id for h in hits]
    assert len(set(ids)) == len(ids)
    surely_fetched = [pid for pid, (low, _) in bounds.items() if low > 0]
    assert min(limit, len(surely_fetched)) <= len(hits) <= min(limit, len(bounds))
    for hit in hits:  # each hit's score is its RRF score (tied RRF scores may come in any order)
        assert hit.id in bounds, f"{hit.id} is in neither prefetch list"
        low, high = bounds[hit.id]
        assert low - eps <= hit.score <= high + eps, (hit.id, hit.score, low, high)
        assert flt is None or flt.matches(hit.payload)
    assert all(a.score >= b.score - eps for a, b in zip(hits, hits[1:]))
    floor = hits[-1].score if len(hits) == limit else -np.inf
    left_out = {pid: low for pid, (low, _) in bounds.items() if pid not in set(ids) and low > floor + eps}
    assert not left_out, f"candidates that surely beat the last hit were left out: {left_out}"


def test_retrieve_with_vectors_and_existing_ids(shared):
    store, name, cases = shared
    ids = list(cases.ids(name))
    wanted = [ids[3], "00000000-0000-0000-0000-000000000000", ids[1]]
    points = store.retrieve(name, wanted, with_vectors=True)
    assert [p.id for p in points] == [ids[3], ids[1]]  # order asked, missing ones skipped
    for point, i in zip(points, (3, 1)):
        unit = cases.vectors["joint"][i] / np.linalg.norm(cases.vectors["joint"][i])  # cosine stores unit vectors
        np.testing.assert_allclose(point.vectors["joint"], unit, atol=1e-5)
        assert point.payload["labels"] == [lab for lab, on in zip(LABELS, cases.labels[i]) if on]
    assert store.retrieve(name, [ids[3]])[0].vectors == {}
    assert store.existing_ids(name, wanted) == {ids[3], ids[1]}


def test_payload_round_trips(shared):
    store, name, cases = shared
    [point] = store.retrieve(name, [cases.ids(name)[0]])
    [original] = [p for p in cases.points(name) if p.id == point.id]
    assert point.payload == original.payload


def test_bad_points_and_queries_are_refused(store, collection):
    store.create_collection(collection, load_schema("cases"), DIM, 4)
    good = np.ones(DIM, dtype=np.float32)
    with pytest.raises(StoreError, match=r"shape \(8,\).*16-d"):
        store.upsert(collection, [Point(point_id(collection, "a"), {"joint": np.ones(8)}, {})])
    with pytest.raises(StoreError, match="not in the collection"):
        store.upsert(collection, [Point(point_id(collection, "a"), {"bogus": good}, {})])
    with pytest.raises(StoreError, match="not a UUID"):
        store.upsert(collection, [Point("case-1", {"joint": good}, {})])
    with pytest.raises(StoreError, match="zero or not finite"):
        store.upsert(collection, [Point(point_id(collection, "a"), {"joint": good * np.nan}, {})])
    with pytest.raises(StoreError, match="not valid JSON"):
        store.upsert(collection, [Point(point_id(collection, "a"), {"joint": good}, {"p": float("nan")})])
    with pytest.raises(QueryError, match="no vector 'bogus'"):
        store.search(collection, "bogus", good)
    assert store.count(collection) == 0


def test_missing_collection_is_named_and_drop_removes(filled):
    store, name, _ = filled
    with pytest.raises(StoreError, match="no collection 'nope'"):
        store.count("nope")
    with pytest.raises(StoreError, match="no collection 'nope'"):
        store.search("nope", "joint", np.ones(DIM))
    store.drop_collection(name)
    assert name not in store.list_collections()
    with pytest.raises(StoreError, match=f"no collection '{name}'"):
        store.collection_info(name)
    with pytest.raises(StoreError, match=f"no collection '{name}'"):
        store.drop_collection(name)
