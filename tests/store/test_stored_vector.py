"""A query by a stored point's own vector (``StoredVector``, what ``--like`` sends) ranks exactly like
the same query with the vector fetched first, on every backend; a missing point or vector is a
QueryError naming it."""

from __future__ import annotations

import numpy as np
import pytest

from cxrsearch.errors import QueryError
from cxrsearch.store import Filter, point_id
from cxrsearch.store.base import StoredVector
from tests.rankings import assert_same_ranking

FILTER = Filter(not_labels=("normal",))


def _example(store, name, cases, row=5):
    pid = point_id(name, cases.keys[row])
    (point,) = store.retrieve(name, [pid], with_vectors=True)
    return pid, point


def test_a_stored_vector_query_ranks_like_its_fetched_vector(shared):
    store, name, cases = shared
    pid, point = _example(store, name, cases)
    by_value = store.search(name, "joint", point.vectors["joint"], FILTER, limit=15)
    by_reference = store.search(name, "joint", StoredVector(pid), FILTER, limit=15)
    assert len(by_reference) == 15
    assert_same_ranking(by_reference, by_value)


def test_a_fused_query_of_stored_vectors_ranks_like_its_fetched_vectors(shared):
    store, name, cases = shared
    pid, point = _example(store, name, cases)
    names = ("joint", "text")
    by_value = store.search_fused(name, [(n, point.vectors[n]) for n in names], FILTER, limit=10, weights=[1.0, 0.5])
    by_reference = store.search_fused(
        name, [(n, StoredVector(pid)) for n in names], FILTER, limit=10, weights=[1.0, 0.5]
    )
    assert_same_ranking(by_reference, by_value)


def test_a_diverse_query_by_a_stored_vector_ranks_like_its_fetched_vector(shared):
    store, name, cases = shared
    pid, point = _example(store, name, cases)
    by_value = store.search_diverse(name, "joint", point.vectors["joint"], FILTER, limit=8, diversity=0.6)
    by_reference = store.search_diverse(name, "joint", StoredVector(pid), FILTER, limit=8, diversity=0.6)
    assert_same_ranking(by_reference, by_value)


def test_a_missing_point_or_vector_is_a_query_error_naming_it(shared):
    store, name, cases = shared
    missing = point_id(name, "no-such-case")
    with pytest.raises(QueryError, match=f"no point {missing}"):
        store.search(name, "joint", StoredVector(missing), limit=3)
    row = int(np.flatnonzero(~cases.has_image)[0])  # a report point: it has no image vector
    report = point_id(name, cases.keys[row])
    with pytest.raises(QueryError, match=f"point {report} has no 'image' vector"):
        store.search(name, "image", StoredVector(report), limit=3)


def test_a_stored_vector_query_of_a_sparse_vector_is_refused(shared):
    store, name, cases = shared
    pid, _ = _example(store, name, cases)
    with pytest.raises(QueryError, match="dense vector, not the sparse 'bm25'"):
        store.search(name, "bm25", StoredVector(pid), limit=3)
