"""Embedded-store behaviour users rely on: persistence, one process per collection, exact results
after the optimiser has built the quantised segments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import StoreError
from cxrsearch.store import Filter, Point, load_schema, open_store, point_id
from cxrsearch.store.edge import EdgeStore
from tests.rankings import assert_matches_oracle

from .conftest import DIM, make_cases


def test_store_persists_across_reopen(tmp_path: Path):
    cases = make_cases(n=60)
    with EdgeStore(tmp_path) as store:
        store.create_collection("cases", load_schema(), DIM, 4)
        store.upsert("cases", cases.points("cases"))
        before = store.search("cases", "joint", cases.vectors["joint"][0], Filter(not_labels=("normal",)), limit=60)
    with EdgeStore(tmp_path) as store:
        assert store.list_collections() == ["cases"]
        assert store.count("cases") == 60
        after = store.search("cases", "joint", cases.vectors["joint"][0], Filter(not_labels=("normal",)))
        info = store.collection_info("cases")
    # close() ran the optimiser between the two searches: another segment layout, the same results
    assert_matches_oracle(after, {h.id: h.score for h in before}, limit=10, atol=1e-6)
    assert info.vector_sizes["joint"] == DIM and info.schema.name == "cases"
    assert (tmp_path / "cases" / "shard").is_dir()  # one shard directory per collection


def test_open_store_defaults_to_the_embedded_store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CXRSEARCH_STORE", str(tmp_path / "from-env"))
    store = open_store()
    assert isinstance(store, EdgeStore) and store.location == str(tmp_path / "from-env")
    assert store.list_collections() == []
    assert not (tmp_path / "from-env").exists()  # reading never creates the directory
    monkeypatch.setenv("CXRSEARCH_QDRANT_URL", "http://127.0.0.1:1")
    assert isinstance(open_store(tmp_path / "explicit"), EdgeStore)  # an explicit --store beats the URL env


_HOLDER = """
import sys
from cxrsearch.store.edge import EdgeStore
store = EdgeStore(sys.argv[1])
store.count("cases")
print("holding", flush=True)
sys.stdin.readline()
store.close()
"""


def test_a_collection_open_in_another_process_is_a_clear_error(tmp_path: Path):
    with EdgeStore(tmp_path) as store:
        store.create_collection("cases", load_schema(), DIM, 4)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        store = EdgeStore(tmp_path)
        with pytest.raises(StoreError) as err:
            store.count("cases")
        message = str(err.value)
        assert str(tmp_path / "cases") in message and f"pid {holder.pid}" in message
        assert "another process" in message and "\n" not in message
        assert store.list_collections() == ["cases"]  # listing needs no lock
    finally:
        holder.communicate("\n", timeout=30)
    with EdgeStore(tmp_path) as store:  # released when the other process closed it
        assert store.count("cases") == 0


_WRITER = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from conftest import make_cases
from cxrsearch.store.edge import EdgeStore
store = EdgeStore(sys.argv[1])
store.upsert("cases", make_cases(n=100).points("cases"))
print("written", flush=True)
time.sleep(60)
"""


def test_points_written_before_a_sigkill_survive(tmp_path: Path):
    with EdgeStore(tmp_path) as store:
        store.create_collection("cases", load_schema(), DIM, 4)
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "written"
    writer.kill()  # SIGKILL: no close(), no flush; the write-ahead log must hold the points
    writer.wait(timeout=30)
    with EdgeStore(tmp_path) as store:
        assert store.count("cases") == 100
        first = [p.id for p in make_cases(n=100).points("cases")[:5]]
        assert store.existing_ids("cases", first) == set(first)


def test_optimised_quantised_segments_still_give_exact_results(tmp_path: Path):
    """Above the indexing threshold close() builds int8 segments; searches rescore with floats."""
    rng = np.random.default_rng(1)
    n, dim = 6000, 512  # 6000 x 512 x 4 B = 12 MB > the 10 MB indexing threshold
    basis = rng.normal(size=(16, dim))
    vectors = (rng.normal(size=(n, 16)) @ basis + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    labels = rng.random(n) < 0.1
    with EdgeStore(tmp_path) as store:
        store.create_collection("big", load_schema(), dim, 4)
        store.upsert(
            "big",
            (
                Point(point_id("big", str(i)), {"joint": vectors[i]}, {"labels": ["cardiomegaly"] if labels[i] else []})
                for i in range(n)
            ),
            batch=1000,
        )
    store = EdgeStore(tmp_path)
    shard_info = store._handle("big").shard.info()  # white-box: prove the optimiser ran
    assert shard_info.indexed_vectors_count >= n
    unit = vectors / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    ids = [point_id("big", str(i)) for i in range(n)]
    for q in range(5):
        query = (unit[q * 7] + 0.05 * rng.normal(size=dim)).astype(np.float32)
        scores = unit @ (query / np.linalg.norm(query))  # float64: the exact oracle
        for flt, mask in ((None, np.ones(n, bool)), (Filter(all_labels=("cardiomegaly",)), labels)):
            hits = store.search("big", "joint", query, flt, limit=10)
            oracle = {pid: float(s) for pid, s, keep in zip(ids, scores, mask) if keep}
            assert_matches_oracle(hits, oracle, limit=10, atol=1e-5)  # nearly tied candidates in any order
    store.close()


def test_a_half_created_collection_is_not_listed_and_can_be_created(tmp_path: Path):
    (tmp_path / "cases" / "shard").mkdir(parents=True)  # as if a create died before collection.json
    store = EdgeStore(tmp_path)
    assert store.list_collections() == []
    assert store.create_collection("cases", load_schema(), DIM, 4) is True
    assert store.list_collections() == ["cases"]
    store.close()


def test_bad_collection_names_are_refused(tmp_path: Path):
    store = EdgeStore(tmp_path)
    for bad in ("", "../escape", "a/b", ".hidden"):
        with pytest.raises(StoreError, match="bad collection name"):
            store.create_collection(bad, load_schema(), DIM, 4)
