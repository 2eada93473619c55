"""The page-cache read-ahead before qdrant-edge loads a shard reads what the engine loads, not the rest."""

from __future__ import annotations

import json

from cxrsearch.store import load_schema
from cxrsearch.store.edge import EdgeStore
from cxrsearch.store.readahead import read_ahead
from tests.store.conftest import DIM

# the layout of an optimised qdrant-edge 0.9 segment (benchmarks/bench_store.py, 100k points)
READ = (
    "segments/a/id_tracker.mappings",
    "segments/a/vector_storage-text/quantized.data",
    "segments/a/vector_storage-label_probs/matrix.dat",  # exact, no int8 copy: scanned by a query
    "segments/a/vector_index-bm25/inverted_index.dat",
    "segments/a/payload_index/x-labels-map/point_to_values.bin",
)
SKIPPED = (
    "segments/a/vector_storage-text/matrix.dat",  # floats beside the int8 copy: rescoring reads a few
    "segments/a/payload_storage/page_0.dat",  # read only for the hits returned
    "wal/open-1",
    "edge_config.json",
)


def test_read_ahead_reads_what_the_engine_loads_not_floats_payloads_or_wal(tmp_path):
    sizes = {}
    for i, rel in enumerate(READ + SKIPPED):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (1000 + 17 * i))
        sizes[rel] = 1000 + 17 * i
    assert read_ahead(tmp_path) == sum(sizes[rel] for rel in READ)


def test_read_ahead_of_a_shard_without_segments_reads_nothing(tmp_path):
    assert read_ahead(tmp_path) == 0


def test_read_ahead_skips_the_holes_of_sparse_files(tmp_path):
    path = tmp_path / "segments" / "a" / "vector_storage-text" / "vectors" / "chunk_0.mmap"
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:  # 32 MB preallocated, 4 KB written: what an appendable segment holds
        handle.write(b"y" * 4096)
        handle.truncate(32 << 20)
    holes_only = tmp_path / "segments" / "a" / "payload_index" / "x-map" / "page_0.dat"
    holes_only.parent.mkdir(parents=True)
    with holes_only.open("wb") as handle:
        handle.truncate(4 << 20)
    read = read_ahead(tmp_path)
    assert 4096 <= read < 1 << 20  # the data (rounded to the file system's blocks), never the holes


def _segment(root, name, storage_type):
    config = {"config": {"vector_data": {"text": {"size": 4, "storage_type": storage_type}}}}
    (root / "segments" / name).mkdir(parents=True)
    (root / "segments" / name / "segment.json").write_text(json.dumps(config))
    data = root / "segments" / name / "vector_storage-label_probs" / "matrix.dat"
    data.parent.mkdir()
    data.write_bytes(b"z" * 5000)
    return data


def test_read_ahead_leaves_appendable_segments_to_the_engine(tmp_path):
    """Fresh points sit in chunked storage the engine maps, not copies: reading it first costs more
    than it saves (docs/performance.md), so only optimised segments are read."""
    _segment(tmp_path, "fresh", "ChunkedMmap")
    _segment(tmp_path, "optimised", "Mmap")
    assert read_ahead(tmp_path) == 5000 + len((tmp_path / "segments" / "optimised" / "segment.json").read_bytes())


def test_read_ahead_of_a_real_fresh_collection_reads_nothing(tmp_path, cases):
    store = EdgeStore(tmp_path)
    try:
        store.create_collection("c", load_schema("cases"), DIM, 4)
        store.upsert("c", cases.points("c"))
    finally:
        store.close()
    assert read_ahead(tmp_path / "c" / "shard") == 0  # below the indexing threshold: one appendable segment
