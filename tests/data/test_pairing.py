"""Image files <-> Open-i image ids, and view positions from the Open-i DICOM metadata table."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from cxrsearch.data.pairing import (
    ImageIdMap,
    image_id_from_filename,
    index_images,
    load_view_table,
    normalize_image_id,
    uid_of_image,
)
from cxrsearch.errors import ConfigError, ImageError, ReportError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CXR3029_IM-1404-1001.png", "CXR3029_IM-1404-1001"),
        ("3029_IM-1404-1001.dcm", "CXR3029_IM-1404-1001"),
        ("CXR3029_IM-1404-1001.DCM", "CXR3029_IM-1404-1001"),
        ("CXR1021_IM-0017-1001-0001.png", "CXR1021_IM-0017-1001-0001"),
        ("CXR1_1_IM-0001-3001.png", "CXR1_1_IM-0001-3001"),
        ("1_IM-0001-3001.dcm", "CXR1_IM-0001-3001"),
        ("CXR12_IM-0001-1001.jpg", "CXR12_IM-0001-1001"),
        ("nih_00000001_000.png", None),
        ("CXR3029_IM-1404-1001.txt", None),
        ("CXR3029.png", None),
    ],
)
def test_image_id_from_filename(name: str, expected: str | None) -> None:
    assert image_id_from_filename(Path("some/dir") / name) == expected


def test_ids_and_uids() -> None:
    assert normalize_image_id("CXR1_1_IM-0001-3001") == "CXR1_IM-0001-3001"
    assert normalize_image_id("CXR3029_IM-1404-1001") == "CXR3029_IM-1404-1001"
    assert uid_of_image("CXR1_1_IM-0001-3001") == uid_of_image("CXR1_IM-0001-3001") == "CXR1"
    with pytest.raises(ReportError):
        uid_of_image("IM-0001-3001")


def test_index_pairs_png_and_dicom_names_and_absorbs_the_report_1_quirk(tmp_path: Path) -> None:
    (tmp_path / "png" / "sub").mkdir(parents=True)
    (tmp_path / "dicom").mkdir()
    files = {
        "png/CXR3029_IM-1404-1001.png": "CXR3029_IM-1404-1001",
        "png/sub/CXR5_IM-2000-1001.png": "CXR5_IM-2000-1001",
        "dicom/3029_IM-1404-2001.dcm": "CXR3029_IM-1404-2001",
        "dicom/1_IM-0001-3001.dcm": "CXR1_IM-0001-3001",
        "png/notes.txt": None,
        "png/nih_00000001_000.png": None,
    }
    for rel in files:
        (tmp_path / rel).write_bytes(b"x")
    index = index_images(tmp_path)
    assert set(index) == {v for v in files.values() if v}
    assert index["CXR3029_IM-1404-2001"] == tmp_path / "dicom/3029_IM-1404-2001.dcm"
    # the report says CXR1_1_IM-0001-3001, the DICOM file says 1_IM-0001-3001
    assert "CXR1_1_IM-0001-3001" in index
    assert index.get("CXR1_1_IM-0001-3001") == index["CXR1_1_IM-0001-3001"] == tmp_path / "dicom/1_IM-0001-3001.dcm"
    assert "CXR1_1_IM-0001-9999" not in index and index.get("CXR9_IM-0001-3001") is None
    with pytest.raises(KeyError):
        index["CXR9_IM-0001-3001"]


def test_png_wins_over_dicom_for_the_same_image(tmp_path: Path) -> None:
    (tmp_path / "dicom").mkdir()
    (tmp_path / "png").mkdir()
    (tmp_path / "dicom" / "7_IM-0001-1001.dcm").write_bytes(b"x")
    (tmp_path / "png" / "CXR7_IM-0001-1001.png").write_bytes(b"x")
    assert index_images(tmp_path)["CXR7_IM-0001-1001"].suffix == ".png"


def test_index_of_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found") as caught:
        index_images(tmp_path / "nope")
    assert caught.value.path == str(tmp_path / "nope")


def test_real_images_folder_pairs_the_open_i_png(images_dir: Path) -> None:
    index = index_images(images_dir)
    assert set(index) == {"CXR1_1_IM-0001-3001"}  # the NIH/TBX11K/PadChest/SIIM files are not Open-i's
    assert index["CXR1_1_IM-0001-3001"].name == "CXR1_1_IM-0001-3001.png"


def test_real_view_table(real_data: Path) -> None:
    table = load_view_table(real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz")
    assert isinstance(table, ImageIdMap)
    assert set(table.values()) == {"PA", "AP", "LATERAL"}
    assert len(table) == 7469 - 2586  # rows with an empty View Position are left out
    assert table["CXR1000_IM-0003-2001"] == "PA"
    assert table.get("CXR1_1_IM-0001-3001") == table["CXR1_IM-0001-3001"]  # report spelling finds the row


def test_bad_view_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_view_table(tmp_path / "missing.csv.gz")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="imageid"):
        load_view_table(wrong)
    short = tmp_path / "short.csv.gz"
    with gzip.open(short, "wt") as handle:
        handle.write("imageid,View Position\nCXR1_IM-0001-1001,PA\nCXR2_IM-0001-1001\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_view_table(short)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(b"imageid,View Position\n" * 1000)[:60])
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_view_table(broken)
    assert caught.value.path == str(broken)
