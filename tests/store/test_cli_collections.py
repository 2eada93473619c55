"""``cxrsearch collections ...`` through the real entry point (CliRunner on cxrsearch.cli.main.app)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.store import load_schema
from cxrsearch.store.edge import EdgeStore

from .conftest import DIM, make_cases

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def test_create_list_info_drop_round_trip(tmp_path: Path):
    store = str(tmp_path / "store")
    first = run("collections", "create", "cases", "--dim", "32", "--labels", "5", "--store", store, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["created"] is True
    again = run("collections", "create", "cases", "--dim", "32", "--labels", "5", "--store", store, "--json")
    assert json.loads(again.stdout)["created"] is False
    clash = run("collections", "create", "cases", "--dim", "64", "--store", store)
    assert clash.exit_code == 1
    assert "32-d 'image' vectors, not 64-d" in clash.stderr and "Traceback" not in clash.output

    listed = json.loads(run("collections", "list", "--store", store, "--json").stdout)
    sizes = {"image": 32, "text": 32, "joint": 32, "label_probs": 5}
    assert listed["collections"] == [
        {"name": "cases", "points": 0, "vector_sizes": sizes, "schema": "cases", "error": None}
    ]
    info = json.loads(run("collections", "info", "cases", "--store", store, "--json").stdout)
    assert info["points_count"] == 0 and info["schema"]["name"] == "cases"
    assert info["schema"]["sparse_vectors"] == {"bm25": "idf"} and info["schema"]["bm25"]["avg_len"] == 28.0
    table = run("collections", "info", "cases", "--store", store)
    assert table.exit_code == 0 and "labels (keyword)" in table.stdout

    refused = run("collections", "drop", "cases", "--store", store, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert EdgeStore(store).list_collections() == ["cases"]
    dropped = run("collections", "drop", "cases", "--store", store, "--yes", "--json")
    assert dropped.exit_code == 0 and json.loads(dropped.stdout)["dropped"] is True
    assert "No collections" in run("collections", "list", "--store", store).stdout


def test_store_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CXRSEARCH_STORE", str(tmp_path / "env-store"))
    assert run("collections", "create", "c1", "--dim", "8").exit_code == 0
    assert (tmp_path / "env-store" / "c1" / "collection.json").is_file()


def test_errors_are_one_line(tmp_path: Path):
    missing = run("collections", "info", "nope", "--store", str(tmp_path))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: ") and "no collection 'nope'" in missing.stderr
    assert missing.stderr.count("\n") == 1
    unreachable = run("collections", "list", "--qdrant-url", "http://127.0.0.1:1")
    assert unreachable.exit_code == 1 and "http://127.0.0.1:1" in unreachable.stderr
    bad_schema = run("collections", "create", "x", "--dim", "8", "--schema", "nope", "--store", str(tmp_path))
    assert bad_schema.exit_code == 1 and "no such collection schema" in bad_schema.stderr


def test_migrate_needs_a_reachable_server(tmp_path: Path):
    with EdgeStore(tmp_path) as store:
        store.create_collection("cases", load_schema(), DIM, 4)
        store.upsert("cases", make_cases(n=10).points("cases"))
    result = run("collections", "migrate", "cases", "--to-url", "http://127.0.0.1:1", "--store", str(tmp_path))
    assert result.exit_code == 1 and "cannot reach" in result.stderr and "http://127.0.0.1:1" in result.stderr


def test_cli_startup_imports_no_qdrant():
    code = "import sys, cxrsearch.cli.main; print(sorted(m for m in sys.modules if m.startswith('qdrant')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_migrate_copies_into_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from cxrsearch.store.client import ClientStore

    with EdgeStore(tmp_path) as store:
        store.create_collection("cases", load_schema(), DIM, 4)
        store.upsert("cases", make_cases(n=40).points("cases"))
    seen: dict[str, object] = {}

    def fake_connect(
        url: str, api_key: str | None = None, timeout: int = 10
    ) -> ClientStore:  # the in-memory API stands in for it
        seen.update(url=url, api_key=api_key)
        return ClientStore.in_memory()

    monkeypatch.setattr(ClientStore, "connect", staticmethod(fake_connect))
    monkeypatch.setenv("CXRSEARCH_QDRANT_API_KEY", "from-env")
    result = run(
        "collections",
        "migrate",
        "cases",
        "--to-url",
        "http://qdrant:6333",
        "--store",
        str(tmp_path),
        "--batch-size",
        "16",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["copied"], out["points"], out["created"]) == (40, 40, True)
    assert seen == {"url": "http://qdrant:6333", "api_key": "from-env"}
