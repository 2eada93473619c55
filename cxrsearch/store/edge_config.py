"""A :class:`~cxrsearch.store.schema.CollectionSchema` in qdrant-edge terms (config, indexes, search
parameters); :mod:`cxrsearch.store.client_config` is the server's counterpart, function for function.
Imported only by :mod:`cxrsearch.store.edge`, which imports ``qdrant_edge`` lazily too."""

from __future__ import annotations

from typing import Any

from cxrsearch.store.schema import CollectionSchema


def shard_config(schema: CollectionSchema, sizes: dict[str, int]) -> Any:
    """``EdgeConfig`` with one dense vector per schema vector (``sizes[name]``-d) and the sparse ones.
    Quantisation is set per vector, so that the schema's unquantised vectors stay exact; those are
    searched by reading every candidate's floats, so they stay in RAM even with ``on_disk_vectors``."""
    import qdrant_edge as qe

    distance = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
    memory = qe.Memory.Cold if schema.on_disk_vectors else None
    quantization = None
    if schema.quantization is not None:
        quantization = qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=schema.quantization.quantile, always_ram=schema.quantization.always_ram
        )
    vectors = {
        name: qe.EdgeVectorParams(
            size=sizes[name],
            distance=distance[dist],
            memory=None if name in schema.unquantized else memory,
            quantization_config=None if name in schema.unquantized else quantization,
        )
        for name, dist in schema.vectors.items()
    }
    sparse = {
        name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if modifier == "idf" else None)
        for name, modifier in (schema.sparse_vectors or {}).items()
    }
    hnsw = qe.HnswIndexConfig(
        m=schema.hnsw.m,
        ef_construct=schema.hnsw.ef_construct,
        full_scan_threshold=schema.hnsw.full_scan_threshold_kb,
        payload_m=schema.hnsw.payload_m or None,
    )
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse or None, hnsw_config=hnsw)


def payload_index_ops(schema: CollectionSchema) -> list[Any]:
    """``UpdateOperation.create_field_index`` for every payload index of the schema."""
    import qdrant_edge as qe

    kinds = {
        "keyword": qe.PayloadSchemaType.Keyword,
        "float": qe.PayloadSchemaType.Float,
        "integer": qe.PayloadSchemaType.Integer,
        "bool": qe.PayloadSchemaType.Bool,
    }
    return [qe.UpdateOperation.create_field_index(field, kinds[kind]) for field, kind in schema.payload_indexes.items()]


def search_params(schema: CollectionSchema) -> Any:
    """``SearchParams``: graph ``ef`` and, with quantisation, rescoring with oversampling."""
    import qdrant_edge as qe

    quant = None
    if schema.quantization is not None:
        quant = qe.QuantizationSearchParams(
            rescore=schema.quantization.rescore, oversampling=schema.quantization.oversampling
        )
    return qe.SearchParams(hnsw_ef=schema.hnsw.ef, quantization=quant)
