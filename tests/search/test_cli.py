"""``cxrsearch index`` / ``cxrsearch search`` as users run them: exit codes, failures file, JSON schema,
default checkpoint, and a SIGKILLed index run that resumes to the exact count."""

from __future__ import annotations

import json
import os
from collections import Counter
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.store.edge import EdgeStore
from tests.search.layout import BAD_IMAGE, N_REPORTS, expected_points

pytestmark = pytest.mark.slow

HIT_KEYS = {"rank", "id", "score", "study_id", "image_id", "kind", "view", "split", "labels", "labels_true", "probs",
            "impression", "findings"}


def _row(table: str, key: str) -> int:
    """The number in the summary table row ``key``."""
    match = re.search(rf"{key}\s+│\s+([\d,]+)", table)
    assert match, table
    return int(match.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def cli_store(tiny_checkpoint, reports_tgz, openi_images, tmp_path_factory):
    """A store filled by ``cxrsearch index`` (with the bad image: exit status 1)."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRSEARCH_OUTPUT", str(root / "outputs"))
        result = CliRunner().invoke(app, ["index", str(reports_tgz), "--images", str(openi_images), "--model",
                                          str(tiny_checkpoint), "--limit", str(N_REPORTS), "--store", str(root / "store")])
    return root / "store", result


def test_index_cli_reports_failures_and_exits_1(cli_store, studies):
    store, result = cli_store
    assert result.exit_code == 1, result.output
    assert _row(result.output, "points in collection") == len(expected_points(studies))
    assert "1 file(s) could not be indexed" in result.output
    failures = next((Path(store).parent / "outputs" / "index-failures").glob("cases-*.jsonl"))
    assert json.loads(failures.read_text(encoding="utf-8"))["image_id"] == BAD_IMAGE


def _json_search(store: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["search", *args, "--json", "-k", "50", "--store", str(store)])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert all(set(hit) == HIT_KEYS for hit in hits)
    assert [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))
    assert all(isinstance(hit["score"], float) and isinstance(hit["labels_true"], list) for hit in hits)
    return hits


def test_search_cli_json_hits_satisfy_the_label_filter(cli_store):
    store, _ = cli_store
    # no --model: the checkpoint recorded in the collection is used
    truth = _json_search(store, "--text", "enlarged heart", "--label", "cardiomegaly", "--truth")
    assert truth and all("cardiomegaly" in hit["labels_true"] for hit in truth)
    with EdgeStore(store) as edge:  # a label the tiny model does predict, so the check is not vacuous
        counts = Counter(label for p in edge.scroll("cases") for label in p.payload["labels"])
    label = counts.most_common()[-1][0]
    predicted = _json_search(store, "--text", "enlarged heart", "--label", label)
    assert len(predicted) == min(50, counts[label]) and all(label in hit["labels"] for hit in predicted)
    cardiomegaly = _json_search(store, "--text", "enlarged heart", "--label", "cardiomegaly")
    assert all("cardiomegaly" in hit["labels"] for hit in cardiomegaly)


def test_search_cli_table_and_one_line_errors(cli_store):
    store, _ = cli_store
    result = CliRunner().invoke(app, ["search", "--like", "CXR2", "--truth", "--not-label", "normal", "-k", "3", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "cases like CXR2; MeSH labels none of normal" in result.output
    result = CliRunner().invoke(app, ["search", "--text", "x", "--label", "big heart", "--store", str(store)])
    assert result.exit_code == 1 and "error: unknown label 'big heart'; valid labels:" in result.output
    result = CliRunner().invoke(app, ["search", "--text", "x", "--collection", "nope", "--store", str(store)])
    assert result.exit_code == 1 and "no collection 'nope'" in result.output


def test_search_cli_without_recorded_checkpoint_says_pass_model(cli_store, tiny_checkpoint, tmp_path):
    store, _ = cli_store
    copy = tmp_path / "store"
    import shutil

    shutil.copytree(store, copy)
    with EdgeStore(copy) as edge:  # pretend the checkpoint moved away since indexing
        points = list(edge.scroll("cases", with_vectors=True))
        moved = [type(p)(p.id, p.vectors, {**p.payload, "checkpoint": str(tmp_path / "gone")}) for p in points]
        edge.upsert("cases", moved)
    result = CliRunner().invoke(app, ["search", "--text", "effusion", "--store", str(copy)])
    assert result.exit_code == 1 and "pass --model CKPT" in result.output
    result = CliRunner().invoke(app, ["search", "--text", "effusion", "--store", str(copy), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output


def test_sigkilled_index_resumes_to_the_exact_count(tiny_checkpoint, reports_tgz, studies, tmp_path):
    """Kill ``cxrsearch index`` (SIGKILL) once some batches are stored, run it again: exact count."""
    limit = 200
    from cxrsearch.data.openi import load_studies

    expected = sum(1 for s in load_studies(reports_tgz)[:limit] if s.report_text())
    command = [sys.executable, "-m", "cxrsearch.cli.main", "index", str(reports_tgz), "--model", str(tiny_checkpoint),
               "--limit", str(limit), "--batch-size", "4", "--store", str(tmp_path / "store")]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        for line in child.stderr:  # plain progress lines off a terminal: "indexing: 8/196 points"
            if line.startswith("indexing: ") and int(line.split()[1].split("/")[0]) >= 8:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=600)
    assert child.returncode == -signal.SIGKILL, "the index run finished before it could be killed"
    with EdgeStore(tmp_path / "store") as edge:
        partial = edge.count("cases")
    assert 8 <= partial < expected
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert result.returncode == 0, result.stderr
    with EdgeStore(tmp_path / "store") as edge:
        assert edge.count("cases") == expected
    assert _row(result.stdout, "already stored") == partial
