"""`cxrsearch data info` and `cxrsearch data inspect` through the real CLI entry point."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_data_help_lists_the_three_commands() -> None:
    result = run("data", "--help")
    assert result.exit_code == 0
    for command in ("download", "info", "inspect"):
        assert command in result.stdout


def test_info_json_on_the_real_tgz(reports_tgz: Path) -> None:
    result = run("data", "info", str(reports_tgz), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["reports"] == 3955 and info["image_refs"] == 7470 and info["reports_without_images"] == 104
    assert info["labels"]["cardiomegaly"] == 395 and info["labels"]["normal"] == 1391
    assert info["splits"] == {"train": 3193, "val": 382, "test": 380}
    assert info["images_found"] is None and info["views"] is None


def test_info_on_the_shared_data_folder_finds_images_and_views(real_data: Path) -> None:
    result = run("data", "info", str(real_data), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["source"] == str(real_data / "openi" / "NLMCXR_reports.tgz")
    assert info["images_dir"] == str(real_data / "images") and info["images_found"] == 1
    assert info["views"] == {"PA": 3593, "AP": 423, "LATERAL": 867, "unknown": 2587}


def test_info_tables_for_people(reports_tgz: Path, images_dir: Path) -> None:
    result = run("data", "info", str(reports_tgz), "--images", str(images_dir))
    assert result.exit_code == 0, result.output
    for text in ("3,955", "7,470", "104", "1 of 7,470", "cardiomegaly", "train 3,193"):
        assert text in result.stdout


def test_info_without_argument_uses_cxrsearch_data(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("data", "info", "--json")  # the autouse fixture points CXRSEARCH_DATA at an empty tmp path
    assert_one_error_line(result, "CXRSEARCH_DATA", "no Open-i reports")
    monkeypatch.setenv("CXRSEARCH_DATA", str(real_data / "openi"))
    result = run("data", "info", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"] == 3955


def test_info_on_a_downloaded_data_folder(reports_tgz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the layout `cxrsearch data download openi --images png` leaves behind
    folder = tmp_path / "openi"
    (folder / "images" / "png").mkdir(parents=True)
    shutil.copyfile(reports_tgz, folder / "NLMCXR_reports.tgz")
    for name in ("CXR1_1_IM-0001-3001.png", "CXR2_IM-0652-1001.png", "CXR99999_IM-0001-1001.png"):
        (folder / "images" / "png" / name).write_bytes(b"")  # pairing is by name; info decodes nothing
    monkeypatch.setenv("CXRSEARCH_DATA", str(folder))
    result = run("data", "info", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["source"] == str(folder / "NLMCXR_reports.tgz") and info["reports"] == 3955
    assert info["images_dir"] == str(folder / "images") and info["images_found"] == 2


def test_info_on_broken_inputs_prints_one_error_line(tmp_path: Path) -> None:
    hostile = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><eCitation>&a;</eCitation>'
    tgz = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("ecgen-radiology/1.xml")
        info.size = len(hostile)
        tar.addfile(info, io.BytesIO(hostile))
    assert_one_error_line(run("data", "info", str(tgz)), f"{tgz}:ecgen-radiology/1.xml", "refused")
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(tgz.read_bytes()[:40])
    assert_one_error_line(run("data", "info", str(truncated)), str(truncated))
    assert_one_error_line(run("data", "info", str(tmp_path / "missing")), "not found")


def test_inspect_a_real_report(reports_tgz: Path, tmp_path: Path) -> None:
    with tarfile.open(reports_tgz) as tar:
        data = tar.extractfile("ecgen-radiology/10.xml").read()
    report = tmp_path / "10.xml"
    report.write_bytes(data)
    result = run("data", "inspect", str(report), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["kind"] == "report" and facts["uid"] == "CXR10"
    assert facts["labels"] == ["calcified granuloma"] and facts["split"] == "test"
    assert facts["image_ids"] == ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]
    assert facts["report_text"].endswith("No acute cardiopulmonary process.")
    table = run("data", "inspect", str(report))
    assert table.exit_code == 0 and "CXR10" in table.stdout and "calcified granuloma" in table.stdout


def test_inspect_a_real_png_with_the_view_from_the_metadata_table(real_data: Path, images_dir: Path) -> None:
    png = images_dir / "png" / "CXR1_1_IM-0001-3001.png"
    metadata = real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz"
    result = run("data", "inspect", str(png), "--metadata", str(metadata), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["kind"] == "png" and facts["photometric"] == "MONOCHROME2" and facts["bits_stored"] == 8
    assert facts["shape"] == [2828, 2320]
    assert facts["view"] == "PA" and facts["view_source"] == "metadata"
    assert 0.0 <= facts["min"] < facts["max"] <= 1.0
    without = json.loads(run("data", "inspect", str(png), "--json").stdout)
    assert without["view"] is None and without["view_source"] is None


def test_inspect_a_real_dicom_table(images_dir: Path) -> None:
    result = run("data", "inspect", str(images_dir / "dicom" / "RG1_UNCR.dcm"))
    assert result.exit_code == 0, result.output
    for text in ("dicom", "MONOCHROME1", "15", "1955 x 1841", "PA"):
        assert text in result.stdout


def test_inspect_bad_files_prints_one_error_line(tmp_path: Path, images_dir: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_one_error_line(run("data", "inspect", str(empty)), str(empty))
    text = tmp_path / "notes.dcm"
    text.write_text("this is not an image\n")
    assert_one_error_line(run("data", "inspect", str(text)), str(text))
    truncated = tmp_path / "CXR1_1_IM-0001-3001.png"
    shutil.copyfile(images_dir / "png" / "CXR1_1_IM-0001-3001.png", truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert_one_error_line(run("data", "inspect", str(truncated)), str(truncated))
    xxe = tmp_path / "r.xml"
    xxe.write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><eCitation>&x;</eCitation>'
    )
    assert_one_error_line(run("data", "inspect", str(xxe)), str(xxe), "refused")
    assert_one_error_line(run("data", "inspect", str(tmp_path / "missing.dcm")), "not found")
    assert_one_error_line(run("data", "inspect", str(tmp_path)), "not a file")


# --------------------------------------------------------------------------- special files in a report folder
def _folder_with(tmp_path: Path, reports_tgz: Path, make_bad) -> Path:
    """A report folder: two real reports and ``1.xml`` made by ``make_bad(path)``."""
    folder = tmp_path / "reports"
    folder.mkdir()
    with tarfile.open(reports_tgz) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".xml")), key=lambda m: int(Path(m.name).stem))
        for member in members[1:3]:
            (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    make_bad(folder / "1.xml")
    return folder


@pytest.mark.timeout(60)  # a FIFO used to block data info forever
@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (os.mkfifo, "a FIFO, not a regular file"),
        (lambda path: path.symlink_to("/dev/zero"), "a device, not a regular file"),
        (lambda path: (path.write_bytes(b""), os.truncate(path, 400_000_000)), "far larger than any Open-i report"),
    ],
    ids=["fifo", "dev-zero-symlink", "400MB"],
)
def test_special_files_in_a_report_folder_are_refused_before_reading(
    tmp_path: Path, reports_tgz: Path, make_bad, message: str
) -> None:
    folder = _folder_with(tmp_path, reports_tgz, make_bad)
    for command in (
        ["data", "info", str(folder)],
        ["train", "--data", str(folder), "--config", "tiny-test", "--out", str(tmp_path / "ckpt")],
    ):
        result = run(*command)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "1.xml" in errors[0] and message in errors[0], result.stderr
