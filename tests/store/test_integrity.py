"""A damaged store says so: the integrity record, `collections verify`, read-only stores.

The three kinds of damage the fault campaign found (segment files deleted, the id tracker's mappings
truncated, random bytes over a vector file) used to leave a store that answered from a fraction of
itself with exit 0. Each is made here on a real embedded store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.errors import StoreError
from cxrsearch.store import Point, load_schema, point_id
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import INTEGRITY_FILE, EdgeStore
from cxrsearch.store.integrity import verify_collection

DIM = 16
N = 400
LABELS = 5


def _points(collection: str, n: int = N, seed: int = 0) -> list[Point]:
    """Points keyed as `cxrsearch index` keys them: image points by image id, report points by study id."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        study = f"CXR{i + 1}"
        image = f"{study}_IM-{i}" if i % 3 else None
        unit = rng.normal(size=(3, DIM)).astype(np.float32)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        vectors = {"text": unit[0], "joint": unit[1], "label_probs": rng.random(LABELS).astype(np.float32)}
        if image:
            vectors["image"] = unit[2]
        payload = {
            "study_id": study,
            "image_id": image,
            "labels": ["normal"],
            "labels_true": ["normal"],
            "probs": {"normal": 0.9},
            "split": "train",
            "view": "PA" if image else None,
        }
        out.append(Point(point_id(collection, image or study), vectors, payload))
    return out


@pytest.fixture()
def clean_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with EdgeStore(root) as store:
        store.create_collection("cases", load_schema(), DIM, LABELS)
        store.upsert("cases", _points("cases"))
    return root


def _segment_dirs(root: Path) -> list[Path]:
    return [p for p in (root / "cases" / "shard" / "segments").iterdir() if p.is_dir()]


def test_a_clean_close_records_what_is_stored_and_the_store_verifies(clean_store: Path):
    record = json.loads((clean_store / "cases" / INTEGRITY_FILE).read_text())
    assert record["points"] == N
    assert record["vectors"]["text"] == N and record["vectors"]["image"] == sum(1 for i in range(N) if i % 3)
    with EdgeStore(clean_store) as store:
        assert store.count("cases") == N
        report = verify_collection(store, "cases", deep=True)
    assert report.ok, report.problems
    result = CliRunner().invoke(app, ["collections", "verify", "cases", "--deep", "--store", str(clean_store)])
    assert result.exit_code == 0 and "OK" in result.output


def test_the_first_write_removes_the_record_so_a_killed_writer_leaves_none(clean_store: Path):
    store = EdgeStore(clean_store)
    store.upsert("cases", _points("cases", n=5, seed=1))
    assert not (clean_store / "cases" / INTEGRITY_FILE).exists()  # a kill -9 here leaves no stale record
    store.close()
    assert json.loads((clean_store / "cases" / INTEGRITY_FILE).read_text())["points"] == N


@pytest.mark.parametrize("damage", ["segments deleted", "id tracker truncated"])
def test_a_store_that_lost_points_refuses_to_answer(clean_store: Path, damage: str):
    for segment in _segment_dirs(clean_store):
        if damage == "segments deleted":
            shutil.rmtree(segment)
        else:
            for mappings in segment.glob("*id_tracker*"):
                with open(mappings, "r+b") as handle:
                    handle.truncate(100)
    with pytest.raises(StoreError, match="collection 'cases' is damaged: the engine loads .* points where 400 were"):
        EdgeStore(clean_store).count("cases")
    runner = CliRunner()
    info = runner.invoke(app, ["collections", "info", "cases", "--store", str(clean_store)])
    assert info.exit_code == 1 and "is damaged" in info.output and "Traceback" not in info.output
    listed = runner.invoke(app, ["collections", "list", "--json", "--store", str(clean_store)])
    assert listed.exit_code == 0 and "is damaged" in json.loads(listed.output)["collections"][0]["error"]
    verify = runner.invoke(app, ["collections", "verify", "cases", "--json", "--store", str(clean_store)])
    assert verify.exit_code == 1
    problems = json.loads(verify.output)["problems"]
    assert any("where 400 were stored" in p for p in problems)
    assert any("set of point ids differs" in p for p in problems)
    # a damaged collection can still be dropped (then rebuilt)
    dropped = runner.invoke(app, ["collections", "drop", "cases", "--yes", "--store", str(clean_store)])
    assert dropped.exit_code == 0 and not (clean_store / "cases").exists()


def test_random_bytes_over_a_vector_file_are_found_by_a_deep_verify(clean_store: Path):
    chunks = [c for s in _segment_dirs(clean_store) for c in (s / "vector_storage-text" / "vectors").glob("chunk_*")]
    assert chunks
    with open(chunks[0], "r+b") as handle:
        handle.seek(DIM * 4 * 10)
        handle.write(np.random.default_rng(0).bytes(DIM * 4 * 50))
    result = CliRunner().invoke(
        app, ["collections", "verify", "cases", "--deep", "--json", "--store", str(clean_store)]
    )
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    assert any("'text'" in p and ("unit length" in p or "NaN" in p) for p in problems), problems


def test_the_record_works_the_same_through_qdrant_client(tmp_path: Path):
    from qdrant_client import QdrantClient

    def local() -> ClientStore:
        return ClientStore(QdrantClient(path=str(tmp_path / "local")), "local", local=True)

    with local() as store:
        store.create_collection("cases", load_schema(), DIM, LABELS)
        store.upsert("cases", _points("cases"))
        assert store.integrity_record("cases") is None  # cleared while writing
    with local() as store:
        record = store.integrity_record("cases")
        assert record is not None and record.points == N
        assert store.vector_counts("cases")["image"] == record.vectors["image"]
        assert verify_collection(store, "cases", deep=True).ok
        # a server that lost points: delete some behind the record's back
        store._client.delete("cases", points_selector=[p.id for p in _points("cases")[:10]])
    with (
        local() as store,
        pytest.raises(StoreError, match="is damaged: the engine loads 390 points where 400 were stored"),
    ):
        store.collection_info("cases")


def test_migrating_under_another_name_keys_points_for_that_name(clean_store: Path):
    from cxrsearch.store.migrate import migrate_collection

    target = ClientStore.in_memory()
    with EdgeStore(clean_store) as source:
        migrate_collection(source, target, "cases", target_collection="copy")
    assert verify_collection(target, "copy", deep=True).problems == [
        "no integrity record: the last write did not close cleanly (or the collection predates records); "
        "a clean `cxrsearch index` run into it writes one"
    ]  # ids fine: only the record is missing before close


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` (user + mount namespaces) for a read-only mount")
def test_a_store_on_a_read_only_file_system_gets_one_clear_line(clean_store: Path, tmp_path: Path):
    mount = tmp_path / "ro"
    mount.mkdir()
    cli = Path(sys.executable).parent / "cxrsearch"
    script = (
        f"mount --bind {clean_store} {mount} && mount -o remount,ro,bind {mount} && "
        f"{cli} collections info cases --store {mount}; echo rc=$?; "
        f"{cli} collections list --store {mount}; echo rc=$?"
    )
    env = {**os.environ, "COLUMNS": "300"}
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert "read-only file system" in text and "copy it to a writable directory" in text, text
    codes = [line for line in out.stdout.splitlines() if line.startswith("rc=")]
    assert codes == ["rc=1", "rc=0"], text  # info fails clearly, list still lists the collection
    assert "cases" in out.stdout


class _EmptyNotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_is_not_qdrant_gets_a_reason(tmp_path: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyNotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreError, match=r"Qdrant answered 404: an empty Not Found \(is this URL a Qdrant server"):
            ClientStore.connect(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    finally:
        server.shutdown()
