"""Films stored as negatives (about half of Open-i's PNGs) are recognised and shown as positives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrsearch.cli.main import app
from cxrsearch.image.decode import decode_image
from cxrsearch.image.polarity import polarity

OPENI_NEGATIVE = "png/CXR1_1_IM-0001-3001.png"
POSITIVES = [
    "png/nih_00000001_000.png",
    "png/nih_00027426_000.png",
    "png/padchest_16747_3_1.jpg",
    "png/tbx11k_h0001_rgb.png",
    "png/tbx11k_tb0005_rgb.png",
    "dicom/RG1_UNCR.dcm",
    "dicom/siim_pneumothorax_chest_pa_jpeg_baseline.dcm",
]


@pytest.fixture(scope="module")
def images(real_data: Path) -> Path:
    return real_data / "images"


def test_the_open_i_png_stored_as_a_negative_is_inverted(images: Path):
    stored = decode_image(images / OPENI_NEGATIVE, fix_negatives=False)
    assert polarity(stored.pixels).negative and not stored.inverted
    assert any("left as stored" in w for w in stored.warnings)
    fixed = decode_image(images / OPENI_NEGATIVE)
    assert fixed.inverted and any("stored as a negative" in w for w in fixed.warnings)
    np.testing.assert_allclose(fixed.pixels, 1.0 - stored.pixels, atol=1e-6)
    check = polarity(fixed.pixels)
    assert not check.negative and check.corners < 0.1  # air outside the body is dark now


@pytest.mark.parametrize("name", POSITIVES)
def test_positive_films_are_left_alone(images: Path, name: str):
    image = decode_image(images / name)
    assert not image.inverted and not polarity(image.pixels).negative


def test_a_dicom_follows_its_header_and_is_only_warned_about(images: Path):
    # the pixels of a MONOCHROME2 film under a MONOCHROME1 header: the header wins, a warning says so
    image = decode_image(images / "dicom/siim_chest_monochrome1_variant.dcm")
    assert image.photometric == "MONOCHROME1" and not image.inverted
    assert any("PhotometricInterpretation tag may be wrong" in w for w in image.warnings)


def test_data_inspect_reports_the_inversion_and_can_show_the_file_as_stored(images: Path):
    runner = CliRunner()
    fixed = json.loads(runner.invoke(app, ["data", "inspect", str(images / OPENI_NEGATIVE), "--json"]).output)
    stored = json.loads(
        runner.invoke(app, ["data", "inspect", str(images / OPENI_NEGATIVE), "--json", "--as-stored"]).output
    )
    assert fixed["inverted"] is True and stored["inverted"] is False
    assert fixed["mean"] == pytest.approx(1.0 - stored["mean"], abs=1e-4)


def test_data_info_counts_the_monochrome1_sources_from_the_metadata_table(real_data: Path, reports_tgz: Path):
    from cxrsearch.data.info import dataset_info

    info = dataset_info(reports_tgz, metadata=real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz")
    assert info.monochrome1 == 3584  # of the 7,470 references: the table's MONOCHROME1 rows
