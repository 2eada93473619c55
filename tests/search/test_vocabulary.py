"""A collection's own vocabulary (its checkpoint's labels), not the packaged file, governs label filters."""

from __future__ import annotations

import numpy as np
import pytest

from cxrsearch.errors import QueryError
from cxrsearch.search.query import facets, search
from cxrsearch.search.spec import QuerySpec
from cxrsearch.search.vocabulary import collection_labels
from cxrsearch.store import Point, load_schema, point_id
from cxrsearch.store.client import ClientStore

VOCABULARY = ("alpha", "beta", "gamma")


@pytest.fixture()
def store() -> ClientStore:
    """Ten report points of a checkpoint whose vocabulary is not the packaged one."""
    rng = np.random.default_rng(0)
    store = ClientStore.in_memory()
    store.create_collection("cases", load_schema(), 8, len(VOCABULARY))
    points = []
    for i in range(10):
        unit = rng.normal(size=8).astype(np.float32)
        unit /= np.linalg.norm(unit)
        labels = ["alpha"] if i % 2 else ["beta"]
        points.append(
            Point(
                point_id("cases", f"CXR{i + 1}"),
                {"text": unit, "joint": unit, "label_probs": rng.random(3).astype(np.float32)},
                {
                    "study_id": f"CXR{i + 1}",
                    "image_id": None,
                    "labels": labels,
                    "labels_true": labels,
                    "probs": {name: 0.9 if name in labels else 0.1 for name in VOCABULARY},
                },
            )
        )
    store.upsert("cases", points)
    return store


def test_the_vocabulary_comes_from_the_points(store: ClientStore):
    assert collection_labels(store, "cases") == VOCABULARY


def test_a_packaged_label_is_refused_with_the_collection_s_labels(store: ClientStore):
    with pytest.raises(QueryError, match="unknown label 'cardiomegaly'; valid labels: alpha, beta, gamma .*'cases'"):
        search(QuerySpec(like="CXR1", all_labels=("cardiomegaly",)), store, "cases")


def test_the_collection_s_own_labels_filter(store: ClientStore):
    spec = QuerySpec(like="CXR1", all_labels=("Alpha",), k=10, vocabulary=VOCABULARY)
    hits = search(spec, store, "cases")
    assert hits and all(h.payload["labels"] == ["alpha"] for h in hits)
    assert len(hits) == 5  # the five alpha studies (CXR1 itself is beta)
    assert facets(QuerySpec(like="CXR1", not_labels=("beta",), vocabulary=VOCABULARY), store, "cases") == {"alpha": 5}


def test_the_cli_filters_with_the_collection_s_labels(store: ClientStore, tmp_path):
    import json

    from typer.testing import CliRunner

    from cxrsearch.cli.main import app
    from cxrsearch.store.edge import EdgeStore

    with EdgeStore(tmp_path / "store") as edge:
        edge.create_collection("cases", load_schema(), 8, len(VOCABULARY))
        edge.upsert("cases", list(store.scroll("cases", with_vectors=True)))
    runner = CliRunner()
    base = [
        "search",
        "--like",
        "CXR1",
        "--store",
        str(tmp_path / "store"),
        "--collection",
        "cases",
        "--json",
        "--no-collapse",
    ]
    result = runner.invoke(app, [*base, "--label", "alpha"])
    assert result.exit_code == 0, result.output
    assert [hit["labels"] for hit in json.loads(result.stdout)] == [["alpha"]] * 5
    refused = runner.invoke(app, [*base, "--label", "cardiomegaly"])
    assert refused.exit_code == 1 and "valid labels: alpha, beta, gamma" in refused.output
