"""The two translations of a schema, read side by side: ``edge_config`` (qdrant-edge) and
``client_config`` (qdrant-client) give each vector the same size, distance, quantisation and memory,
the same sparse modifiers, HNSW graph, search parameters and payload indexes."""

from __future__ import annotations

from typing import Any

import pytest

from cxrsearch.store import client_config, edge_config, list_schemas, load_schema
from cxrsearch.store.client import ClientStore
from cxrsearch.store.schema import CollectionSchema


def _variants() -> list[CollectionSchema]:
    """The shipped schemas, and ``cases`` with vectors on disk and without quantisation."""
    shipped = [load_schema(name) for name in list_schemas()]
    data = load_schema("cases").to_dict()
    on_disk = CollectionSchema.from_dict({**data, "name": "on-disk", "on_disk_vectors": True})
    plain = CollectionSchema.from_dict({**data, "name": "plain", "quantization": None, "shard_number": 2})
    return [*shipped, on_disk, plain]


def _kind(enum: Any) -> str:
    """``Distance.Cosine`` (qdrant-edge) and ``Distance.COSINE`` (value ``"Cosine"``) -> ``"cosine"``."""
    return str(getattr(enum, "value", enum)).rsplit(".", 1)[-1].lower()


@pytest.mark.parametrize("schema", _variants(), ids=lambda s: s.name)
def test_both_backends_translate_a_schema_alike(schema: CollectionSchema) -> None:
    sizes = schema.vector_sizes(8, 4)
    edge = edge_config.shard_config(schema, sizes)
    client = client_config.collection_config(schema, sizes)
    assert set(edge.vectors) == set(client["vectors_config"]) == set(schema.vectors)
    for name, e in edge.vectors.items():
        c = client["vectors_config"][name]
        assert e.size == c.size == sizes[name]
        assert _kind(e.distance) == _kind(c.distance) == schema.vectors[name]
        quantized = schema.quantization is not None and name not in schema.unquantized
        assert (e.quantization_config is not None) is (c.quantization_config is not None) is quantized
        if quantized:
            assert e.quantization_config.quantile == pytest.approx(c.quantization_config.scalar.quantile)  # f32
            assert e.quantization_config.always_ram == c.quantization_config.scalar.always_ram
        on_disk = schema.on_disk_vectors and name not in schema.unquantized
        assert (e.memory is not None) is bool(c.on_disk) is on_disk
    assert {n: _kind(p.modifier) for n, p in (edge.sparse_vectors or {}).items()} == {
        n: _kind(p.modifier) for n, p in (client["sparse_vectors_config"] or {}).items()
    }
    eh, ch = edge.hnsw_config, client["hnsw_config"]
    assert (eh.m, eh.ef_construct, eh.full_scan_threshold, eh.payload_m) == (
        ch.m,
        ch.ef_construct,
        ch.full_scan_threshold,
        ch.payload_m,
    )
    assert (client["shard_number"], client["replication_factor"]) == (schema.shard_number, schema.replication_factor)

    es, cs = edge_config.search_params(schema), client_config.search_params(schema)
    assert es.hnsw_ef == cs.hnsw_ef == schema.hnsw.ef
    assert (es.quantization is None) is (cs.quantization is None) is (schema.quantization is None)
    if schema.quantization is not None:
        assert es.quantization.rescore == cs.quantization.rescore
        assert es.quantization.oversampling == pytest.approx(cs.quantization.oversampling)

    indexes = client_config.payload_index_types(schema)
    assert {field: _kind(kind) for field, kind in indexes.items()} == schema.payload_indexes
    assert len(edge_config.payload_index_ops(schema)) == len(indexes)


def test_a_server_store_creates_the_translated_collection_and_its_payload_indexes(monkeypatch) -> None:
    """The server path (``local=False``) without a server: the in-memory client, its calls recorded."""
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    created: list[dict[str, Any]] = []
    indexed: list[tuple[str, Any]] = []
    create = client.create_collection

    def record_create(name: str, **kwargs: Any) -> Any:
        created.append(kwargs)
        return create(name, **kwargs)

    def record_index(name: str, field: str, field_schema: Any = None, wait: bool = True, **_: Any) -> None:
        indexed.append((field, field_schema))

    monkeypatch.setattr(client, "create_collection", record_create)
    monkeypatch.setattr(client, "create_payload_index", record_index)
    store = ClientStore(client, ":memory:", local=False)
    schema = load_schema("cases")
    assert store.create_collection("c", schema, 8, 4) is True
    [kwargs] = created
    assert kwargs["metadata"]["cxrsearch"]["vector_sizes"] == schema.vector_sizes(8, 4)
    expected = client_config.collection_config(schema, schema.vector_sizes(8, 4))
    assert {k: v for k, v in kwargs.items() if k != "metadata"} == expected
    assert dict(indexed) == client_config.payload_index_types(schema)
    assert store.create_collection("c", schema, 8, 4) is False and len(created) == 1
    client.close()
