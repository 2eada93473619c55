"""A :class:`~cxrsearch.store.schema.CollectionSchema` in qdrant-client terms (collection config,
payload indexes, search parameters): the server's counterpart of :mod:`cxrsearch.store.edge_config`,
function for function. Imported only by :mod:`cxrsearch.store.client`, which imports ``qdrant_client``
lazily too."""

from __future__ import annotations

from typing import Any

from cxrsearch.store.schema import CollectionSchema


def collection_config(schema: CollectionSchema, sizes: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments of ``QdrantClient.create_collection`` (all but the name and ``metadata``):
    one dense vector per schema vector (``sizes[name]``-d), the sparse ones, the HNSW graph and the
    server's sharding. Quantisation is set per vector, so that the schema's unquantised vectors stay
    exact; those are searched by reading every candidate's floats, so they stay in RAM even with
    ``on_disk_vectors``."""
    from qdrant_client import models

    distance = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
    quantization = None
    if schema.quantization is not None:
        quantization = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8,
                quantile=schema.quantization.quantile,
                always_ram=schema.quantization.always_ram,
            )
        )
    vectors = {
        name: models.VectorParams(
            size=sizes[name],
            distance=distance[dist],
            on_disk=schema.on_disk_vectors and name not in schema.unquantized,
            quantization_config=None if name in schema.unquantized else quantization,
        )
        for name, dist in schema.vectors.items()
    }
    sparse = {
        name: models.SparseVectorParams(modifier=models.Modifier.IDF if modifier == "idf" else None)
        for name, modifier in (schema.sparse_vectors or {}).items()
    }
    hnsw = models.HnswConfigDiff(
        m=schema.hnsw.m,
        ef_construct=schema.hnsw.ef_construct,
        payload_m=schema.hnsw.payload_m or None,
        full_scan_threshold=schema.hnsw.full_scan_threshold_kb,
    )
    return {
        "vectors_config": vectors,
        "sparse_vectors_config": sparse or None,
        "hnsw_config": hnsw,
        "shard_number": schema.shard_number,
        "replication_factor": schema.replication_factor,
    }


def payload_index_types(schema: CollectionSchema) -> dict[str, Any]:
    """Field -> ``PayloadSchemaType`` for every payload index of the schema (``create_payload_index``)."""
    from qdrant_client import models

    kinds = {
        "keyword": models.PayloadSchemaType.KEYWORD,
        "float": models.PayloadSchemaType.FLOAT,
        "integer": models.PayloadSchemaType.INTEGER,
        "bool": models.PayloadSchemaType.BOOL,
    }
    return {field: kinds[kind] for field, kind in schema.payload_indexes.items()}


def search_params(schema: CollectionSchema) -> Any:
    """``SearchParams``: graph ``ef`` and, with quantisation, rescoring with oversampling."""
    from qdrant_client import models

    quant = None
    if schema.quantization is not None:
        quant = models.QuantizationSearchParams(
            rescore=schema.quantization.rescore, oversampling=schema.quantization.oversampling
        )
    return models.SearchParams(hnsw_ef=schema.hnsw.ef, quantization=quant)
