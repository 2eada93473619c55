"""BM25 sparse vectors (IDF applied by the engine) and weighted fusion: the same on every backend.

Sparse search is held to a numpy oracle of Qdrant's IDF-weighted score (query weights are 1, so a
point scores ``sum over shared terms of idf(t) * w_point(t)`` with ``idf = ln(1 + (N - n + 0.5) /
(n + 0.5))``); weighted RRF has no closed form here, so the embedded store and qdrant-client are
held to each other on the same points and queries (random sparse weights: no ties to order). The
linear fusion is held to the weighted sum of its lists' own scores.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from cxrsearch.store import Filter, Point, load_schema, point_id
from cxrsearch.store.base import SparseVector
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import EdgeStore
from cxrsearch.store.schema import Bm25Spec
from cxrsearch.text.bm25 import average_length, embed_documents, embed_query
from tests.rankings import assert_matches_oracle, assert_same_ranking
from tests.store.conftest import DIM

FINDINGS = (
    "pleural effusion",
    "pneumothorax",
    "cardiomegaly",
    "pulmonary edema",
    "focal consolidation",
    "calcified granuloma",
    "hiatal hernia",
    "atelectasis",
)
QUERIES = ("pleural effusion", "no pneumothorax", "small calcified granuloma", "edema and effusion")


def _reports(n: int = 90, seed: int = 3) -> list[str]:
    """Reports of random findings, affirmed or denied (several share a text, so BM25 scores tie)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shown = rng.choice(FINDINGS, size=int(rng.integers(1, 4)), replace=False)
        parts = [f"{'No' if rng.random() < 0.5 else 'Small'} {finding}." for finding in shown]
        out.append(" ".join(parts) + (" Heart size normal." if rng.random() < 0.5 else ""))
    return out


@pytest.fixture(scope="module")
def corpus():
    texts = _reports()
    params = Bm25Spec(1.2, 0.75, average_length(texts))
    vectors = embed_documents(texts, params)
    rng = np.random.default_rng(5)
    dense = rng.normal(size=(len(texts), DIM)).astype(np.float32)
    probs = rng.random((len(texts), 4)).astype(np.float32)
    return texts, params, vectors, dense, probs


def _fill(store, name: str, corpus) -> None:
    texts, params, vectors, dense, probs = corpus
    store.create_collection(name, load_schema("cases").with_bm25_avg_len(params.avg_len), DIM, 4)
    points = [
        Point(
            point_id(name, f"r{i}"),
            {"text": dense[i], "joint": dense[i], "label_probs": probs[i], "bm25": vectors[i]},
            {"study_id": f"CXR{i}", "split": "train" if i % 3 else "test"},
        )
        for i in range(len(texts))
    ]
    store.upsert(name, points, batch=32)


def _oracle(corpus, name: str, query, keep: np.ndarray) -> dict[str, float]:
    _, _, vectors, _, _ = corpus
    df = Counter(t for v in vectors for t in v.indices)
    n_docs = len(vectors)
    idf = {t: math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) for t in df}
    out = {}
    for i, vec in enumerate(vectors):
        weights = dict(zip(vec.indices, vec.values))
        shared = [t for t in query.indices if t in weights]
        if keep[i] and shared:
            out[point_id(name, f"r{i}")] = sum(idf[t] * weights[t] for t in shared)
    return out


@pytest.mark.parametrize("text", QUERIES)
@pytest.mark.parametrize("flt", [None, Filter(split="train")], ids=["all", "train"])
def test_sparse_search_is_idf_weighted_bm25(store, collection, corpus, text, flt):
    _fill(store, collection, corpus)
    query = embed_query(text, corpus[1])
    keep = np.array([flt is None or i % 3 != 0 for i in range(len(corpus[0]))])
    oracle = _oracle(corpus, collection, query, keep)
    hits = store.search(collection, "bm25", query, flt, 10)
    assert_matches_oracle(hits, oracle, 10, atol=1e-4)
    # negated mentions are their own terms: "pleural effusion" never matches a report that denies it
    if text == "pleural effusion":
        texts = corpus[0]
        for hit in hits:
            i = int(hit.payload["study_id"][3:])
            assert "Small pleural effusion" in texts[i]


@pytest.mark.parametrize("fusion", ["rrf", "linear"])
@pytest.mark.parametrize("weights", [None, [1.0, 1.0, 1.0], [0.5, 2.0, 0.5], [3.0, 0.0, 1.0]])
def test_weighted_fusion_with_sparse_agrees_across_backends(tmp_path, weights, fusion):
    """Dense, sparse and label prefetches fused with weights, by RRF or by the weighted sum of their
    scores: the embedded store and qdrant-client give the same ranking and scores. The sparse weights
    are random (no ties): with tied lists a backend may order a tie either way, and RRF turns that
    into different scores."""
    if fusion == "linear" and weights is None:
        pytest.skip("a linear fusion needs weights (refusing None is tested below)")
    rng = np.random.default_rng(11)
    n, vocabulary = 80, 40
    sparse = []
    for _ in range(n):
        ids = sorted(rng.choice(vocabulary, size=int(rng.integers(2, 8)), replace=False).tolist())
        sparse.append(SparseVector(tuple(ids), tuple(float(v) for v in rng.random(len(ids)) + 0.1)))
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    probs = rng.random((n, 4)).astype(np.float32)
    edge, memory = EdgeStore(tmp_path / "store"), ClientStore.in_memory()
    try:
        for backend in (edge, memory):
            backend.create_collection("c", load_schema("cases").with_bm25_avg_len(5.0), DIM, 4)
            backend.upsert(
                "c",
                [
                    Point(
                        point_id("c", f"r{i}"),
                        {"text": dense[i], "label_probs": probs[i], "bm25": sparse[i]},
                        {"study_id": f"CXR{i}", "split": "train" if i % 3 else "test"},
                    )
                    for i in range(n)
                ],
            )
        for _ in range(5):
            ids = sorted(rng.choice(vocabulary, size=3, replace=False).tolist())
            queries = [
                ("text", rng.normal(size=DIM).astype(np.float32)),
                ("bm25", SparseVector(tuple(ids), (1.0, 1.0, 1.0))),
                ("label_probs", rng.random(4).astype(np.float32)),
            ]
            for flt in (None, Filter(split="train")):
                assert_same_ranking(
                    edge.search_fused("c", queries, flt, 10, weights=weights, fusion=fusion),
                    memory.search_fused("c", queries, flt, 10, weights=weights, fusion=fusion),
                    atol=1e-5,
                )
    finally:
        edge.close()
        memory.close()


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_linear_fusion_scores_the_weighted_sum_of_the_list_scores(tmp_path, backend):
    """The linear fusion's score of a point is ``sum_i w_i * score_i`` over the prefetch lists, a list
    the point is not in counting 0 (each list read on its own, as deep as the fusion's prefetches);
    it ranks by that sum, and refuses to run without weights."""
    from cxrsearch.errors import QueryError
    from cxrsearch.store.checks import prefetch_limit

    rng = np.random.default_rng(5)
    n = 120
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    probs = rng.random((n, 4)).astype(np.float32)
    store = EdgeStore(tmp_path / "store") if backend == "edge" else ClientStore.in_memory()
    try:
        store.create_collection("c", load_schema("cases").with_bm25_avg_len(5.0), DIM, 4)
        store.upsert(
            "c", [Point(point_id("c", f"r{i}"), {"text": dense[i], "label_probs": probs[i]}, {}) for i in range(n)]
        )
        queries = [("text", rng.normal(size=DIM).astype(np.float32)), ("label_probs", rng.random(4).astype(np.float32))]
        weights = [0.3, 2.0]
        fused = store.search_fused("c", queries, None, 10, weights=weights, fusion="linear")
        lists = [
            {h.id: h.score for h in store.search("c", name, vec, None, prefetch_limit(10))} for name, vec in queries
        ]
        expected = {
            pid: sum(w * scores.get(pid, 0.0) for w, scores in zip(weights, lists)) for pid in set().union(*lists)
        }
        assert len(fused) == 10
        for hit in fused:
            assert hit.score == pytest.approx(expected[hit.id], abs=1e-5)
        assert fused[0].score == pytest.approx(max(expected.values()), abs=1e-5)
        assert all(a.score >= b.score - 1e-6 for a, b in zip(fused, fused[1:]))
        with pytest.raises(QueryError, match="linear fusion needs one weight per input"):
            store.search_fused("c", queries, None, 10, fusion="linear")
        with pytest.raises(QueryError, match="unknown fusion"):
            store.search_fused("c", queries, None, 10, weights=weights, fusion="dbsf")
    finally:
        store.close()


def test_label_vectors_stay_exact_in_optimised_segments(tmp_path):
    """Label-probability vectors of similar cases lie very close together; the schema keeps them out
    of int8 quantisation, so after the optimiser ran their search is still the exact top 10. (With
    them quantised this collection returns about 10 wrong hits in 200: measured; segments below the
    optimiser's size threshold are searched exactly either way, hence 20,000 points with a 256-d
    embedding beside them.)"""
    rng = np.random.default_rng(2)
    n, dim, labels = 20_000, 256, 23
    probs = (np.where(rng.random((n, labels)) < 0.15, 0.9, 0.05) + 0.05 * rng.random((n, labels))).astype(np.float32)
    dense = rng.normal(size=(n, dim)).astype(np.float32)
    with EdgeStore(tmp_path / "store") as store:
        store.create_collection("c", load_schema("cases").with_bm25_avg_len(5.0), dim, labels)
        store.upsert(
            "c",
            [Point(point_id("c", f"r{i}"), {"text": dense[i], "label_probs": probs[i]}, {}) for i in range(n)],
            batch=1000,
        )
    ids = [point_id("c", f"r{i}") for i in range(n)]
    with EdgeStore(tmp_path / "store") as store:  # reopened after the optimiser ran
        for q in np.where(rng.random((20, labels)) < 0.15, 0.9, 0.05).astype(np.float32):
            oracle = dict(zip(ids, (probs.astype(np.float64) @ q.astype(np.float64)).tolist()))  # dot product
            assert_matches_oracle(store.search("c", "label_probs", q, None, 10), oracle, 10, atol=1e-5)


def test_label_vectors_rank_by_confidence_not_by_direction(store, collection):
    """The label vector's distance is the dot product of the raw probabilities, on every backend: a
    case the model is sure holds the query's finding (beside two others) outranks a report it was
    unsure about (every probability small). Cosine ranked them the other way round, since it
    normalises both vectors (0.99 for the unsure report, 0.60 for the sure case)."""
    store.create_collection(collection, load_schema("cases").with_bm25_avg_len(5.0), DIM, 4)
    probs = {
        "sure": [0.95, 0.90, 0.90, 0.02],
        "unsure": [0.08, 0.01, 0.01, 0.01],
        "other finding": [0.01, 0.90, 0.02, 0.02],
    }
    unit = np.ones(DIM, dtype=np.float32) / math.sqrt(DIM)
    store.upsert(
        collection,
        [
            Point(
                point_id(collection, name),
                {"text": unit, "label_probs": np.array(p, dtype=np.float32)},
                {"study_id": name},
            )
            for name, p in probs.items()
        ],
    )
    query = np.array([0.97, 0.02, 0.02, 0.01], dtype=np.float32)
    hits = store.search(collection, "label_probs", query, None, 3)
    assert [h.payload["study_id"] for h in hits] == ["sure", "unsure", "other finding"]
    for hit in hits:
        assert hit.score == pytest.approx(float(np.dot(query, probs[hit.payload["study_id"]])), abs=1e-5)
