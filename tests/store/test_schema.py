"""Collection schemas are data: shipped files load, bad files fail with the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrsearch.errors import CxrSearchError, QueryError, StoreError
from cxrsearch.store import Filter, list_schemas, load_schema, point_id
from cxrsearch.store.schema import CollectionSchema


def test_shipped_schemas_load_and_round_trip():
    assert {"cases", "cases-hnsw"} <= set(list_schemas())
    for name in list_schemas():
        schema = load_schema(name)
        assert schema.vector_names == ("image", "text", "joint", "label_probs")
        assert {name: d for name, d in schema.vectors.items() if d != "cosine"} == {"label_probs": "dot"}
        assert schema.vector_sizes(32, 5) == {"image": 32, "text": 32, "joint": 32, "label_probs": 5}
        assert schema.sparse_vectors == {"bm25": "idf"} and schema.bm25.avg_len is None  # from the corpus
        assert schema.unquantized == ("label_probs",)  # close-together probabilities: int8 would lose recall
        fixed = schema.with_bm25_avg_len(28.0)
        assert fixed.bm25.avg_len == 28.0 and CollectionSchema.from_dict(fixed.to_dict()) == fixed
        assert {"labels", "labels_true", "view", "split", "study_id"} <= set(schema.payload_indexes)
        assert CollectionSchema.from_dict(schema.to_dict()) == schema
        assert json.loads(json.dumps(schema.to_dict())) == schema.to_dict()
    assert load_schema("cases").hnsw.m == 0 and load_schema("cases").quantization.type == "int8"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("vectors"), "missing key"),
        (lambda d: d.update(vectorz={}), "unknown key"),
        (lambda d: d["vectors"]["image"].update(distance="manhattan"), "distance must be one of"),
        (lambda d: d["vectors"]["label_probs"].update(size="many"), "size must be one of"),
        (lambda d: d["vectors"]["label_probs"].update(quantized="no"), "quantized must be true or false"),
        (lambda d: d["sparse_vectors"]["bm25"].update(modifier="tf"), "modifier must be"),
        (lambda d: d.pop("bm25"), "needs a 'bm25' object"),
        (lambda d: d["bm25"].update(b=2), "bm25.b in"),
        (lambda d: d["bm25"].update(avg_len=0), "avg_len must be"),
        (lambda d: d["hnsw"].update(m=-1), "hnsw.m must be an integer >= 0"),
        (lambda d: d["quantization"].update(type="binary"), "quantization.type must be 'int8'"),
        (lambda d: d["payload_indexes"].update(labels="text"), "payload_indexes.labels must be one of"),
        (lambda d: d.update(name="-cases"), "'name' must be 1-64"),
        (lambda d: d["sparse_vectors"].update(image={"modifier": None}), "bad sparse vector name 'image'"),
        (lambda d: d["hnsw"].update(ef=0), "hnsw.ef must be >= 1"),
        (lambda d: d["quantization"].update(quantile=0.1), "quantization.quantile must be in"),
        (lambda d: d.update(shard_number=0), "'shard_number' must be null or an integer >= 1"),
        (lambda d: d.update(on_disk_vectors="yes"), "'on_disk_vectors' must be true or false"),
    ],
)
def test_bad_schema_files_name_the_file_and_problem(tmp_path: Path, mutate, message):
    data = load_schema("cases").to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=message) as err:
        load_schema(str(path))
    assert str(path) in str(err.value)


def test_schema_sections_are_checked_in_file_order():
    """With several sections wrong, the error is about the first one checked (vectors before hnsw...)."""
    data = load_schema("cases").to_dict()
    data["vectors"]["image"]["distance"] = "manhattan"
    data["hnsw"]["m"] = -1
    data["payload_indexes"]["labels"] = "text"
    with pytest.raises(StoreError, match="distance must be one of"):
        CollectionSchema.from_dict(data)
    data["vectors"]["image"]["distance"] = "cosine"
    with pytest.raises(StoreError, match="hnsw.m must be"):
        CollectionSchema.from_dict(data)


def test_shipped_schemas_are_package_resources():
    """Found through importlib.resources (in a checkout, the cxrsearch/collections symlink to the
    repository's collections/; in a wheel, its package data)."""
    from importlib import resources

    shipped = resources.files("cxrsearch").joinpath("collections")
    assert shipped.joinpath("cases.json").is_file()
    repository = Path(__file__).resolve().parents[2] / "collections"
    assert list_schemas() == sorted(p.stem for p in repository.glob("*.json"))


def test_unknown_schema_lists_the_available_ones():
    with pytest.raises(StoreError, match="available: .*cases"):
        load_schema("nope")


def test_point_ids_are_deterministic_uuid5():
    assert point_id("cases", "CXR1_IM-0001") == point_id("cases", "CXR1_IM-0001")
    assert point_id("cases", "CXR1_IM-0001") != point_id("cases", "CXR1")
    assert point_id("cases", "CXR1")[14] == "5"  # UUID version 5


def test_filter_validation_and_python_semantics():
    with pytest.raises(QueryError, match="both required and excluded"):
        Filter(all_labels=("cardiomegaly",), not_labels=("cardiomegaly",))
    with pytest.raises(CxrSearchError, match="not the string"):
        Filter(any_labels="cardiomegaly")
    payload = {"labels": ["cardiomegaly", "effusion"], "labels_true": ["normal"], "view": "PA", "study_id": "CXR1"}
    assert Filter(all_labels=["cardiomegaly", "effusion"], view="PA").matches(payload)
    assert not Filter(all_labels=("cardiomegaly",), truth=True).matches(payload)
    assert Filter(any_labels=("nodule", "effusion"), not_labels=("normal",)).matches(payload)
    assert not Filter(exclude_study_ids=("CXR1",)).matches(payload)
    assert not Filter(view="LATERAL").matches(payload) and not Filter(split="test").matches(payload)
    assert Filter().is_empty() and Filter().matches({})
