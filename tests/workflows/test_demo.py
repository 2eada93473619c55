"""``cxrsearch demo``: finds the data (or says exactly what to set), trains then reuses its model,
indexes with resume semantics, and runs its three searches (tiny model, a slice of the real reports)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.errors import ConfigError
from cxrsearch.model.train_report import TrainEvent
from cxrsearch.workflows import demo
from cxrsearch.workflows.demo import DemoOptions, find_data, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture
def small_openi(reports_tgz: Path, tmp_path: Path) -> Path:
    """A data folder holding the first 250 real reports as XML files (``ecgen-radiology/``)."""
    folder = tmp_path / "openi" / "ecgen-radiology"
    folder.mkdir(parents=True)
    with tarfile.open(reports_tgz) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")]
        for member in sorted(members, key=lambda m: int(Path(m.name).stem))[:250]:
            (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    return folder.parent


def test_find_data_uses_the_data_folder_and_its_metadata_table(real_data, monkeypatch):
    monkeypatch.setenv("CXRSEARCH_DATA", str(real_data / "openi"))
    found = find_data()
    assert found.reports == real_data / "openi" / "NLMCXR_reports.tgz" and found.origin == "data folder"
    assert found.metadata == real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz"


def test_offline_without_data_says_exactly_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRSEARCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CXRSEARCH_OPENI_URL", "http://127.0.0.1:9/")  # nothing listens: the download fails at once
    with pytest.raises(ConfigError, match="set CXRSEARCH_DATA to a folder holding NLMCXR_reports.tgz"):
        find_data()
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "CXRSEARCH_DATA" in lines[0]


def test_demo_trains_indexes_searches_then_reuses_everything(small_openi, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "choose_config", lambda: ("tiny-test", "tiny-test: results are not meaningful"))
    options = DemoOptions(data=small_openi, store=tmp_path / "store", models=tmp_path / "models", epochs=1)
    first = run_demo(options)
    assert first.model.trained_now and first.index.ok and first.index.count == first.index.planned > 200
    assert [s.command for s in first.searches][:2] == [
        'search --text "enlarged heart" --label cardiomegaly',
        'search --text "small right pleural effusion" --not-label normal',
    ]
    assert all("cardiomegaly" in hit.payload["labels"] for hit in first.searches[0].hits)
    assert all("normal" not in hit.payload["labels"] for hit in first.searches[1].hits)
    if len(first.searches) == 3:
        example = first.searches[2].spec.like
        assert all(hit.payload["study_id"] != example for hit in first.searches[2].hits)

    events = []
    second = run_demo(options, on_event=events.append)
    assert not second.model.trained_now and second.model.checkpoint == first.model.checkpoint
    assert (second.index.indexed, second.index.skipped_existing, second.index.count) == (
        0,
        first.index.count,
        first.index.count,
    )
    assert not any(isinstance(event, TrainEvent) for event in events)

    (first.model.checkpoint / demo.MARKER).unlink()  # as if killed after the last epoch was saved
    resumed: list = []
    third = run_demo(options, on_event=resumed.append)
    assert any(e.stage == "step" and e.message.startswith("resuming") for e in resumed)
    epochs = [e for e in resumed if isinstance(e, TrainEvent) and e.stage == "epoch_start"]
    assert epochs == []  # every epoch was saved: resuming trains none again
    assert third.model.trained_now and third.model.checkpoint == first.model.checkpoint
    assert third.index.indexed == 0 and (first.model.checkpoint / demo.MARKER).is_file()

    monkeypatch.setenv("CXRSEARCH_MODELS", str(tmp_path / "models"))
    result = CliRunner().invoke(app, ["demo", "--data", str(small_openi), "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    for text in (
        "reusing the demo model",
        "(reused; val macro AUROC",
        f"{first.index.count:,} points",
        "Similar cases with cardiomegaly",
        '$ cxrsearch search --text "enlarged heart" --label cardiomegaly',
        "notice: tiny-test: results are not meaningful",
    ):
        assert text in result.output, text
