"""The terminal keeps working while `cxrsearch serve` holds the embedded store: read-only commands go
through the server's JSON API (the same hits), writing commands refuse naming the server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.index import index_studies
from cxrsearch.serve.registry import RECORD_FILE, running_server
from cxrsearch.store.edge import EdgeStore
from tests.rankings import assert_same_hits
from tests.search.layout import COLLECTION, index_options


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(store: Path, collection: str = COLLECTION) -> Iterator[tuple[int, subprocess.Popen]]:
    """``cxrsearch serve`` on ``collection`` of ``store``, in its own process, until the block ends."""
    port = _free_port()
    cli = Path(sys.executable).parent / "cxrsearch"
    command = [str(cli), "serve", "--store", str(store), "--collection", collection, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    record = store / collection / RECORD_FILE
    deadline = time.monotonic() + 120
    while not record.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"cxrsearch serve did not start: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.2)
    try:
        yield port, process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert not record.is_file(), "a server that stops removes its record"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, reports_tgz: Path, training_images: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("beside")
    with EdgeStore(root / "store") as store:  # the first 40 reports, with the real radiographs of reports 1-9
        options = index_options(reports_tgz, training_images, None, root / "failures", limit=40)
        index_studies(options, store, tiny_checkpoint)
    with _serving(root / "store") as (port, process):
        yield root / "store", port, process


def test_search_in_a_terminal_goes_through_the_running_server(server):
    store, port, process = server
    found = running_server(store, COLLECTION)
    assert found is not None and found.pid == process.pid and found.url == f"http://127.0.0.1:{port}"
    runner = CliRunner()
    result = runner.invoke(
        app, ["search", "--text", "enlarged heart", "--label", "normal", "--json", "-k", "5", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    query = "text=enlarged+heart&label=normal&k=5"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?{query}", timeout=30) as response:
        page = json.loads(response.read())
    assert_same_hits(json.loads(result.stdout), page)  # the page's /api/search and the terminal: the same hits
    table = runner.invoke(app, ["search", "--text", "enlarged heart", "-k", "3", "--store", str(store)])
    assert table.exit_code == 0 and f"via cxrsearch serve at http://127.0.0.1:{port}" in table.output


def test_the_servers_notices_are_printed_by_the_terminal_search(
    tiny_checkpoint: Path, reports_tgz: Path, tmp_path: Path
):
    """A search through the server tells what a local one tells: on a collection made before the label
    vector's distance became the dot product, the notice with the upgrade (stderr; the JSON is
    unchanged, the page's /api/search body)."""
    import dataclasses

    from cxrsearch.model.encode import Encoder
    from cxrsearch.store import load_schema

    schema = load_schema("cases").with_bm25_avg_len(28.0)
    old = dataclasses.replace(schema, vectors={**schema.vectors, "label_probs": "cosine"})
    encoder = Encoder(tiny_checkpoint)
    with EdgeStore(tmp_path / "store") as store:
        store.create_collection("old", old, encoder.config.fusion.joint_dim, len(encoder.labels))
        options = index_options(reports_tgz, None, None, tmp_path / "failures", limit=12, collection="old")
        index_studies(options, store, tiny_checkpoint)
    runner = CliRunner()
    common = ["--store", str(tmp_path / "store"), "--collection", "old"]
    with _serving(tmp_path / "store", "old") as (port, _):
        table = runner.invoke(app, ["search", "--text", "pleural effusion", "-k", "3", *common])
        assert table.exit_code == 0, table.output
        assert "via cxrsearch serve" in table.output
        assert "compares label vectors by cosine" in table.output and "index again" in table.output
        as_json = runner.invoke(app, ["search", "--text", "pleural effusion", "-k", "3", "--json", *common])
        assert as_json.exit_code == 0, as_json.output
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/search?text=pleural+effusion&k=3", timeout=30
        ) as response:
            page = json.loads(response.read())
            assert "cosine" in json.loads(response.headers["X-Cxrsearch-Notices"])[0]
        assert "compares label vectors by cosine" in as_json.stderr
        assert_same_hits(json.loads(as_json.stdout), page)
        assert "cosine" not in as_json.stdout


def test_an_image_search_in_a_terminal_is_uploaded_to_the_running_server(server, images_dir: Path):
    import httpx

    store, port, _ = server
    film = images_dir / "png" / "nih_00000001_000.png"
    result = CliRunner().invoke(app, ["search", "--image", str(film), "-k", "4", "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    with film.open("rb") as handle:
        page = httpx.post(f"http://127.0.0.1:{port}/api/search?k=4", files={"image": (film.name, handle)}, timeout=60)
    assert page.status_code == 200
    assert_same_hits(json.loads(result.stdout), page.json())
    assert page.json() and all(hit["kind"] == "image" for hit in page.json())


def test_collections_list_and_info_go_through_the_running_server(server):
    store, port, process = server
    runner = CliRunner()
    listed = runner.invoke(app, ["collections", "list", "--json", "--store", str(store)])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)["collections"]
    assert row["error"] is None and row["points"] > 0 and row["schema"] == "cases"
    info = runner.invoke(app, ["collections", "info", COLLECTION, "--json", "--store", str(store)])
    assert info.exit_code == 0, info.output
    data = json.loads(info.output)
    assert data["points_count"] == row["points"] and f"pid {process.pid}" in data["location"]


def test_explain_in_a_terminal_goes_through_the_running_server(server, tmp_path: Path):
    store, port, process = server
    runner = CliRunner()
    hits = json.loads(
        runner.invoke(app, ["search", "--text", "enlarged heart", "--json", "-k", "1", "--store", str(store)]).stdout
    )
    result = runner.invoke(
        app,
        [
            "explain",
            hits[0]["id"],
            "--text",
            "enlarged heart",
            "--json",
            "--out",
            str(tmp_path / "out"),
            "--store",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["hit"]["id"] == hits[0]["id"] and data["query"]["text"] == "enlarged heart"
    assert data["top_words"] and all(Path(path).is_file() for path in data["files"].values())
    refused = runner.invoke(app, ["explain", hits[0]["id"], "--text", "x", "--steps", "8", "--store", str(store)])
    assert refused.exit_code == 1 and "explains with 32 steps" in refused.output


def test_writing_into_the_served_store_is_refused_naming_the_server(server, reports_tgz: Path, tiny_checkpoint: Path):
    store, port, process = server
    result = CliRunner().invoke(
        app, ["index", str(reports_tgz), "--model", str(tiny_checkpoint), "--limit", "5", "--store", str(store)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"served by `cxrsearch serve` (pid {process.pid}) at http://127.0.0.1:{port}" in " ".join(
        result.output.split()
    )


def test_a_stale_record_is_ignored(tmp_path: Path):
    (tmp_path / COLLECTION).mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / COLLECTION / RECORD_FILE).write_text(
        json.dumps(
            {
                "pid": dead.pid,
                "url": "http://127.0.0.1:9",
                "host": "127.0.0.1",
                "collection": COLLECTION,
                "token": False,
            }
        )
    )
    assert running_server(tmp_path, COLLECTION) is None
    (tmp_path / COLLECTION / RECORD_FILE).write_text(
        json.dumps(  # alive, but not on loopback: never used implicitly
            {"pid": 1, "url": "http://10.0.0.5:8765", "host": "0.0.0.0", "collection": COLLECTION, "token": True}
        )
    )
    assert running_server(tmp_path, COLLECTION) is None
