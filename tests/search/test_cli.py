"""``cxrsearch index`` / ``cxrsearch search`` as users run them: exit codes, failures file, JSON schema,
default checkpoint, and a SIGKILLed index run that resumes to the exact count."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.search.modes import DEFAULT_WEIGHTS
from cxrsearch.store.edge import EdgeStore
from tests.rankings import tie_groups
from tests.search.layout import BAD_IMAGE, N_REPORTS, expected_points

pytestmark = pytest.mark.slow

HIT_KEYS = {
    "rank",
    "id",
    "score",
    "study_id",
    "image_id",
    "kind",
    "view",
    "split",
    "labels",
    "labels_true",
    "probs",
    "impression",
    "findings",
    "identical",
    "identical_count",
}


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
        result = CliRunner().invoke(
            app,
            [
                "index",
                str(reports_tgz),
                "--images",
                str(openi_images),
                "--model",
                str(tiny_checkpoint),
                "--limit",
                str(N_REPORTS),
                "--store",
                str(root / "store"),
            ],
        )
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
    hits = json.loads(result.stdout)  # notices go to stderr: stdout is the JSON alone
    assert isinstance(hits, list)  # without --facets: a plain list (scripts rely on it)
    assert all(set(hit) - {"components"} == HIT_KEYS for hit in hits)
    for hit in hits:  # a hybrid text query shows what its fused score was made of
        if "--text" in args and "--image" not in args:
            # no fusion.json beside the fixture checkpoint: the default fusion's components (weight > 0)
            assert set(hit["components"]) == {n for n, w in DEFAULT_WEIGHTS.weights.items() if w > 0}
            keys = {"rank", "score", "weight"} | ({"coefficient"} if DEFAULT_WEIGHTS.fusion == "linear" else set())
            assert all(set(part) == keys for part in hit["components"].values())
            assert any(part["rank"] is not None for part in hit["components"].values())
        else:
            assert "components" not in hit
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
    predicted = _json_search(store, "--text", "enlarged heart", "--label", label, "--no-collapse")  # every point
    assert len(predicted) == min(50, counts[label]) and all(label in hit["labels"] for hit in predicted)
    cardiomegaly = _json_search(store, "--text", "enlarged heart", "--label", "cardiomegaly")
    assert all("cardiomegaly" in hit["labels"] for hit in cardiomegaly)


def test_search_cli_table_and_one_line_errors(cli_store):
    store, _ = cli_store
    result = CliRunner().invoke(
        app, ["search", "--like", "CXR2", "--truth", "--not-label", "normal", "-k", "3", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "cases like CXR2; MeSH labels none of normal" in result.output
    result = CliRunner().invoke(app, ["search", "--text", "x", "--label", "big heart", "--store", str(store)])
    assert result.exit_code == 1 and "error: unknown label 'big heart'; valid labels:" in result.output
    result = CliRunner().invoke(app, ["search", "--text", "x", "--collection", "nope", "--store", str(store)])
    assert result.exit_code == 1 and "no collection 'nope'" in result.output
    # bytes the terminal could not decode (Python passes them on as lone surrogates): one line, no internal error
    result = CliRunner().invoke(app, ["search", "--text", "enlarged heart \udcff\udcfe", "--store", str(store)])
    assert result.exit_code == 1 and "--text holds bytes that are not UTF-8 text" in result.output
    assert "internal error" not in result.output


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
    result = CliRunner().invoke(
        app, ["search", "--text", "effusion", "--store", str(copy), "--model", str(tiny_checkpoint)]
    )
    assert result.exit_code == 0, result.output
    # a --model that cannot be loaded: the message points at that path, not at "pass --model"
    result = CliRunner().invoke(
        app, ["search", "--text", "effusion", "--store", str(copy), "--model", str(tmp_path / "nope")]
    )
    assert result.exit_code == 1 and "check the --model path" in result.output and "pass --model" not in result.output


def test_sigkilled_index_resumes_to_the_exact_count(tiny_checkpoint, reports_tgz, studies, tmp_path):
    """Kill ``cxrsearch index`` (SIGKILL) once some batches are stored, run it again: exact count."""
    limit = 200
    from cxrsearch.data.openi import load_studies

    expected = sum(1 for s in load_studies(reports_tgz)[:limit] if s.report_text())
    command = [
        sys.executable,
        "-m",
        "cxrsearch.cli.main",
        "index",
        str(reports_tgz),
        "--model",
        str(tiny_checkpoint),
        "--limit",
        str(limit),
        "--batch-size",
        "4",
        "--store",
        str(tmp_path / "store"),
    ]
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
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


# -- results an educator can use: collapsed identical reports, --diverse, --facets ------------------------


def _search_json(store: Path, *args: str):
    result = CliRunner().invoke(app, ["search", *args, "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _key(hit: dict) -> str | None:
    from cxrsearch.search.collapse import report_key

    return report_key(hit)


def _duplicated_report(store: Path) -> str:
    """The text of a report that several points carry (e.g. the radiographs of one study)."""
    from cxrsearch.text.report import report_text

    with EdgeStore(store) as edge:
        points = sorted(edge.scroll("cases"), key=lambda p: p.id)
    keys = Counter(_key(p.payload) for p in points)
    point = next(p for p in points if _key(p.payload) is not None and keys[_key(p.payload)] > 1)
    return report_text(point.payload.get("findings"), point.payload.get("impression"))


def test_search_cli_collapses_identical_reports_by_default(cli_store):
    store, _ = cli_store
    query = ("--text", _duplicated_report(store))  # its copies rank near the top
    every = _search_json(store, *query, "-k", "50", "--no-collapse")
    keys = [_key(hit) for hit in every]
    assert len(every) == 50 and len(set(filter(None, keys))) < sum(k is not None for k in keys), (
        "the fixture should hold identical reports among the 50 best hits"
    )
    assert all(hit["identical"] == [] and hit["identical_count"] == 0 for hit in every)

    shown = _search_json(store, *query, "-k", "10")  # collapsed: fetches 10 * 5 = 50 hits
    shown_keys = [_key(hit) for hit in shown]
    assert len(shown) == 10 and len(set(filter(None, shown_keys))) == sum(k is not None for k in shown_keys)
    # The shown hits are the first of each group of the uncollapsed 50, in order; the others are listed.
    # Copies of one report can score exactly alike (two radiographs of one study): which copy heads
    # its group, and the order of tied groups, may differ between two searches.
    heads, members = [], {}
    for hit, key in zip(every, keys):
        if key is not None and key in members:
            members[key].append(hit)
        elif len(heads) < 10:
            heads.append(hit)
            if key is not None:
                members[key] = []

    def group_of(hit, listed):  # a shown hit and the copies listed under it, by id
        return frozenset([hit["id"], *(m["id"] for m in listed)])

    want = [group_of(h, members.get(_key(h), [])) for h in heads]
    got = [group_of(h, h["identical"]) for h in shown]
    assert [h["score"] for h in shown] == pytest.approx([h["score"] for h in heads], abs=1e-6)
    for ranks in tie_groups([h["score"] for h in heads], 1e-6)[:-1]:  # the last may tie with the 11th
        assert {got[r] for r in ranks} == {want[r] for r in ranks}
    for hit in shown:
        assert hit["identical_count"] == len(hit["identical"]) and hit["rank"] == shown.index(hit) + 1
        assert all(set(m) == {"id", "study_id"} for m in hit["identical"])
    assert any(hit["identical_count"] for hit in shown)

    table = CliRunner().invoke(app, ["search", *query, "-k", "10", "--store", str(store)])
    assert table.exit_code == 0, table.output
    top = next(hit for hit in shown if hit["identical_count"])
    assert f"+{top['identical_count']} identical" in table.output
    flat = CliRunner().invoke(app, ["search", *query, "-k", "10", "--no-collapse", "--store", str(store)])
    assert flat.exit_code == 0 and "identical" not in flat.output


@pytest.mark.parametrize("truth", [False, True], ids=["predicted", "mesh"])
def test_search_cli_facets_count_every_case_passing_the_filters(cli_store, truth):
    store, _ = cli_store
    args = ["--text", "enlarged heart", "--not-label", "normal", "-k", "3", "--facets"] + (["--truth"] if truth else [])
    out = _search_json(store, *args)
    assert set(out) == {"hits", "facets"} and len(out["hits"]) == 3
    assert all(set(hit) - {"components"} == HIT_KEYS for hit in out["hits"])
    counts = out["facets"]
    assert counts and "normal" not in counts
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    from cxrsearch.store import Filter

    with EdgeStore(store) as edge:
        passing = Filter(not_labels=("normal",), truth=truth)
        for label, count in counts.items():  # each count is the count of that narrower filter
            assert count == edge.count("cases", Filter(all_labels=(label,), not_labels=("normal",), truth=truth))
        field = "labels_true" if truth else "labels"
        seen = Counter(lab for p in edge.scroll("cases", passing) for lab in p.payload[field])
        total = edge.count("cases", passing)
    assert counts == dict(seen)  # every label present is counted: not only the hits' labels
    assert sum(counts.values()) > sum(len(h["labels_true" if truth else "labels"]) for h in out["hits"])

    table = CliRunner().invoke(app, ["search", *args, "--store", str(store)])
    assert table.exit_code == 0, table.output
    assert f"{'MeSH' if truth else 'predicted'} labels in all {total:,} matching cases" in table.output
    assert f"{next(iter(counts.values())):,}" in table.output


def _joint(store: Path, ids: list[str]):
    import numpy as np

    with EdgeStore(store) as edge:
        points = edge.retrieve("cases", ids, with_vectors=True)
    matrix = np.stack([p.vectors["joint"] for p in points])
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_search_cli_diverse(cli_store, openi_images):
    from tests.rankings import assert_same_ranking

    store, _ = cli_store
    like = ("--like", "CXR2", "-k", "8", "--no-collapse")
    plain = _search_json(store, *like)
    assert_same_ranking(_search_json(store, *like, "--diverse", "0"), plain)
    diverse = _search_json(store, *like, "--diverse", "0.9")
    assert len(diverse) == 8 and all(hit["study_id"] != "CXR2" for hit in diverse)
    assert diverse[0]["id"] == plain[0]["id"] or diverse[0]["score"] == pytest.approx(plain[0]["score"], abs=1e-5)

    def mean_similarity(hits):
        unit = _joint(store, [h["id"] for h in hits])
        sims = unit @ unit.T
        return (sims.sum() - len(hits)) / (len(hits) * (len(hits) - 1))

    assert mean_similarity(diverse) < mean_similarity(plain)  # what --diverse is for: hits less alike
    filtered = _search_json(store, "--like", "CXR2", "--diverse", "0.5", "--not-label", "normal", "--truth")
    assert filtered and all("normal" not in hit["labels_true"] for hit in filtered)
    keys = [_key(h) for h in filtered]  # collapsing still applies on top of --diverse
    assert len(set(filter(None, keys))) == sum(k is not None for k in keys)

    image = next(openi_images.glob("png/*.png"))
    hits = _search_json(store, "--image", str(image), "--diverse", "0.5", "-k", "3")
    assert hits and all(hit["image_id"] for hit in hits)
    table = CliRunner().invoke(app, ["search", "--like", "CXR2", "--diverse", "0.5", "-k", "3", "--store", str(store)])
    assert table.exit_code == 0 and "diversity 0.5" in table.output

    result = CliRunner().invoke(app, ["search", "--text", "effusion", "--diverse", "0.5", "--store", str(store)])
    assert result.exit_code == 1 and "--diverse applies to image, text+image and --like queries" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["search", "--like", "CXR2", "--diverse", "1.5", "--store", str(store)])
    assert result.exit_code == 2  # a usage error: the range is 0..1


def test_search_cli_tells_when_the_collection_compares_label_vectors_by_cosine(
    cli_store, tiny_checkpoint, reports_tgz, tmp_path
):
    """A collection made before the label vector's distance became the dot product still searches,
    with a notice saying how to upgrade; a current collection gets none."""
    import dataclasses

    from cxrsearch.store import load_schema

    store, _ = cli_store
    with EdgeStore(store) as edge:
        sizes = edge.collection_info("cases").vector_sizes
    schema = load_schema("cases").with_bm25_avg_len(28.0)
    old = dataclasses.replace(schema, vectors={**schema.vectors, "label_probs": "cosine"})
    with EdgeStore(tmp_path / "store") as edge:
        edge.create_collection("old", old, sizes["text"], sizes["label_probs"])
    runner = CliRunner()
    common = ["--store", str(tmp_path / "store"), "--collection", "old"]
    indexed = runner.invoke(
        app, ["index", str(reports_tgz), "--model", str(tiny_checkpoint), "--limit", str(N_REPORTS), *common]
    )
    assert indexed.exit_code == 0, indexed.output
    found = runner.invoke(
        app, ["search", "--text", "pleural effusion", "-k", "3", "--model", str(tiny_checkpoint), *common]
    )
    assert found.exit_code == 0, found.output
    assert "compares label vectors by cosine" in found.output and "index again" in found.output
    current = runner.invoke(app, ["search", "--text", "pleural effusion", "-k", "3", "--store", str(store)])
    assert current.exit_code == 0, current.output
    assert "cosine" not in current.output
    # the web page shows the same notice above its hits; the JSON stays what `search --json` prints
    from cxrsearch.search import QuerySpec
    from cxrsearch.serve.service import run_search

    with EdgeStore(tmp_path / "store") as edge:
        result = run_search(QuerySpec(text="pleural effusion", k=3), edge, "old", str(tiny_checkpoint))
    assert sum("cosine" in n for n in result.notices) == 1
    assert isinstance(result.json(), list) and "cosine" not in json.dumps(result.json())


def test_an_unsure_reading_of_a_text_query_is_said_on_stderr(cli_store, monkeypatch):
    """When no label of the query's label vector reaches UNSURE_BELOW, `search` says how the model
    read the query (stderr: the JSON stays clean); not under a label filter, nor for a negation."""
    from cxrsearch.search import query

    store, _ = cli_store

    def run(*args: str):
        result = CliRunner().invoke(app, ["search", *args, "--json", "-k", "3", "--store", str(store)])
        assert result.exit_code == 0, result.output
        assert isinstance(json.loads(result.stdout), list)
        return result.stderr

    monkeypatch.setattr(query, "UNSURE_BELOW", 1.01)  # every reading is unsure
    said = run("--text", "air around the lung")
    assert "the model is unsure what 'air around the lung' asks for" in said and "--label" in said
    assert "unsure" not in run("--text", "air around the lung", "--label", "normal")
    assert "unsure" not in run("--text", "no pleural effusion")
    assert "unsure" not in run("--like", "CXR1")
    monkeypatch.setattr(query, "UNSURE_BELOW", 0.0)  # no reading is unsure
    assert "unsure" not in run("--text", "air around the lung")


def test_unsure_reading_names_the_three_likeliest_labels():
    from cxrsearch.search.query import UNSURE_BELOW, unsure_reading

    labels = ("cardiomegaly", "pleural effusion", "pneumothorax", "normal")
    said = unsure_reading("air around the lung", [0.05, 0.2, 0.01, 0.1], labels)
    assert said is not None and "pleural effusion 0.20, normal 0.10, cardiomegaly 0.05" in said
    assert unsure_reading("pneumothorax", [0.0, 0.0, UNSURE_BELOW, 0.1], labels) is None  # one label reaches it
    assert unsure_reading("no effusion", [0.0, 0.0, 0.0, 0.0], labels) is None  # nothing left to read
    assert unsure_reading("x", None, labels) is None
