"""Embedded store -> server (qdrant-client in-memory here): an exact, idempotent, verified copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrsearch.errors import StoreError
from cxrsearch.store import load_schema
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import EdgeStore
from cxrsearch.store.migrate import migrate_collection
from tests.rankings import assert_matches_oracle

from .conftest import DIM, make_cases


def test_migrate_copies_exactly_and_is_idempotent(tmp_path: Path):
    cases = make_cases(n=90)
    source, target = EdgeStore(tmp_path), ClientStore.in_memory()
    source.create_collection("cases", load_schema(), DIM, 4)
    source.upsert("cases", cases.points("cases"))
    progress: list[tuple[int, int]] = []
    result = migrate_collection(
        source, target, "cases", batch=32, progress=lambda event: progress.append((event.done, event.total))
    )
    assert (result.copied, result.points, result.created) == (90, 90, True)
    assert progress == [(32, 90), (64, 90), (90, 90)]
    src = {p.id: p for p in source.scroll("cases", with_vectors=True)}
    dst = {p.id: p for p in target.scroll("cases", with_vectors=True)}
    assert src.keys() == dst.keys()
    for pid, point in src.items():
        assert dst[pid].payload == point.payload
        assert dst[pid].vectors.keys() == point.vectors.keys()  # points without an image stay without one
        for name, vec in point.vectors.items():
            np.testing.assert_allclose(dst[pid].vectors[name], vec, atol=1e-6)
    assert target.collection_info("cases").schema == source.collection_info("cases").schema
    again = migrate_collection(source, target, "cases")
    assert (again.points, again.created) == (90, False)
    query = cases.vectors["joint"][4]
    # two engines, each with its own float kernels: the same hits and scores, near-ties in any order
    full = {h.id: h.score for h in source.search("cases", "joint", query, limit=len(cases.keys))}
    assert_matches_oracle(target.search("cases", "joint", query), full, limit=10, atol=1e-5)
    source.close()


def test_migrate_refuses_a_target_of_another_size(tmp_path: Path):
    source, target = EdgeStore(tmp_path), ClientStore.in_memory()
    source.create_collection("cases", load_schema(), DIM, 4)
    target.create_collection("cases", load_schema(), DIM * 2, 4)
    with pytest.raises(StoreError, match=f"{DIM * 2}-d 'image' vectors, not {DIM}-d"):
        migrate_collection(source, target, "cases")
    source.close()
