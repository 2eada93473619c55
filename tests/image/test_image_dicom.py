"""The DICOM grey pipeline stage by stage, on DICOM files written with pydicom.

Each stage is checked against pydicom's own reference implementation where one exists
(``apply_modality_lut``, ``apply_windowing``, ``apply_voi``), normalised to ``[0, 1]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

from cxrsearch.image import decode_image
from tests.image.image_builders import IDENTIFIERS, dicom_dataset, write_dicom


@pytest.fixture
def ramp12() -> np.ndarray:
    """A non-square 12-bit test image: a diagonal ramp with noise, values 100..3900."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:64]
    return (100 + (yy + xx) * 3800 / 110 + rng.integers(0, 60, (48, 64))).clip(0, 4095).astype(np.uint16)


def _decode(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **elements: object):
    """Write ``pixels`` (plus header ``elements``) as a DICOM file at ``path`` and decode it."""
    return decode_image(write_dicom(path, dicom_dataset(pixels, photometric, bits, **elements)))


def _reference(path: Path, func) -> np.ndarray:
    """pydicom's stage ``func`` applied to the stored array, scaled to [0, 1] like the pipeline."""
    ds = pydicom.dcmread(path)
    return func(ds.pixel_array, ds), ds


def test_window_matches_pydicom_apply_windowing(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "w.dcm", dicom_dataset(ramp12, bits_stored=12, WindowCenter=2000, WindowWidth=1500))
    reference, _ = _reference(path, apply_windowing)
    image = decode_image(path)
    np.testing.assert_allclose(image.pixels, reference / 4095.0, atol=1e-5)
    assert image.intensity_mapping == "window centre 2000 width 1500 (LINEAR)"
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0  # the window clips both ends


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_other_voi_lut_functions_match_pydicom(tmp_path: Path, ramp12: np.ndarray, function: str) -> None:
    ds = dicom_dataset(
        ramp12, bits_stored=12, WindowCenter=[1800, 900], WindowWidth=[2000, 400], VOILUTFunction=function
    )
    path = write_dicom(tmp_path / "f.dcm", ds)
    reference, _ = _reference(path, apply_windowing)
    image = decode_image(path)
    np.testing.assert_allclose(image.pixels, reference / 4095.0, atol=1e-5)
    assert f"({function}, 1 of 2)" in image.intensity_mapping


def test_rescale_then_window_matches_pydicom(tmp_path: Path, ramp12: np.ndarray) -> None:
    ds = dicom_dataset(
        ramp12, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=2500, WindowWidth=4000
    )
    path = write_dicom(tmp_path / "r.dcm", ds)
    ds = pydicom.dcmread(path)
    reference = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = -1000.0, 4095 * 2 - 1000.0
    image = decode_image(path)
    np.testing.assert_allclose(image.pixels, (reference - y_min) / (y_max - y_min), atol=1e-5)
    assert image.intensity_mapping.startswith("rescale x2-1000, then window")


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_voi_lut_sequence_matches_pydicom_and_wins_over_the_window(tmp_path: Path, ramp12: np.ndarray, vr: str) -> None:
    first, entries = 500, 3000
    data = (np.sqrt(np.linspace(0, 1, entries)) * 4000 + 50).astype(np.uint16)  # 12-bit data, 16 declared
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [entries, first, 16])
    item.add_new("LUTData", vr, data.tolist() if vr == "US" else data.astype("<u2").tobytes())
    ds = dicom_dataset(ramp12, bits_stored=12, WindowCenter=2000, WindowWidth=100)
    ds.VOILUTSequence = [item]
    path = write_dicom(tmp_path / "lut.dcm", ds)
    ds = pydicom.dcmread(path)
    reference = apply_voi(ds.pixel_array, ds).astype(np.float64)
    lut = data.astype(np.float64)
    image = decode_image(path)
    np.testing.assert_allclose(image.pixels, (reference - lut.min()) / (lut.max() - lut.min()), atol=1e-6)
    assert image.intensity_mapping.startswith("VOI LUT (3000 entries from 500")


def test_no_voi_means_min_max_over_the_values(tmp_path: Path, ramp12: np.ndarray) -> None:
    image = decode_image(write_dicom(tmp_path / "m.dcm", dicom_dataset(ramp12, bits_stored=12)))
    lo, hi = float(ramp12.min()), float(ramp12.max())
    np.testing.assert_allclose(image.pixels, (ramp12 - lo) / (hi - lo), atol=1e-6)
    assert image.intensity_mapping == f"min-max of the pixel values [{lo:g}, {hi:g}]"
    assert (image.stored_min, image.stored_max, image.source_dtype) == (lo, hi, "uint16")


def test_bits_above_bits_stored_are_ignored(tmp_path: Path, ramp12: np.ndarray) -> None:
    clean = write_dicom(tmp_path / "clean.dcm", dicom_dataset(ramp12, bits_stored=12))
    ds = pydicom.dcmread(clean)
    ds.PixelData = (ramp12 | 0xA000).astype("<u2").tobytes()  # garbage in the 4 unused high bits
    dirty = write_dicom(tmp_path / "dirty.dcm", ds)
    np.testing.assert_array_equal(decode_image(dirty).pixels, decode_image(clean).pixels)


def test_signed_pixels(tmp_path: Path) -> None:
    arr = np.linspace(-1000, 3000, 48 * 64).reshape(48, 64).astype(np.int16)
    image = decode_image(write_dicom(tmp_path / "s.dcm", dicom_dataset(arr, bits_stored=16)))
    assert image.stored_min == -1000.0 and image.pixels[0, 0] == 0.0 and image.pixels[-1, -1] == 1.0


def test_monochrome1_inversion_comes_after_the_window(tmp_path: Path, ramp12: np.ndarray) -> None:
    m2 = _decode(tmp_path / "m2.dcm", ramp12, "MONOCHROME2", WindowCenter=2000, WindowWidth=1000)
    m1 = _decode(tmp_path / "m1.dcm", ramp12, "MONOCHROME1", WindowCenter=2000, WindowWidth=1000)
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)


def test_padding_is_left_out_of_min_max_and_output_black(tmp_path: Path, ramp12: np.ndarray) -> None:
    arr = ramp12.copy()
    arr[:, :8] = 4095  # a bright collimator border declared as padding
    image = decode_image(write_dicom(tmp_path / "p.dcm", dicom_dataset(arr, "MONOCHROME1", 12, PixelPaddingValue=4095)))
    assert np.all(image.pixels[:, :8] == 0.0)
    inner = image.pixels[:, 8:]
    assert inner.min() == 0.0 and inner.max() == 1.0  # the range comes from the real pixels only
    assert "padding pixels set to 0" in image.intensity_mapping


def test_unusable_windows_are_skipped_with_a_warning(tmp_path: Path, ramp12: np.ndarray) -> None:
    bad_width = _decode(tmp_path / "a.dcm", ramp12, WindowCenter=2000, WindowWidth=0)
    assert bad_width.intensity_mapping.startswith("min-max")
    assert any("window width 0 is invalid" in w for w in bad_width.warnings)

    off_range = _decode(tmp_path / "b.dcm", ramp12, WindowCenter=60000, WindowWidth=10)
    assert off_range.intensity_mapping.startswith("min-max") and off_range.pixels.std() > 0.1
    assert any("makes the whole image one value" in w for w in off_range.warnings)


def test_uniform_image_decodes_to_zeros_with_a_warning(tmp_path: Path) -> None:
    image = _decode(tmp_path / "u.dcm", np.full((32, 32), 700, np.uint16))
    assert not image.pixels.any() and any("uniform" in w for w in image.warnings)


def test_colour_dicom_becomes_grey_with_a_warning(tmp_path: Path) -> None:
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    image = decode_image(write_dicom(tmp_path / "c.dcm", dicom_dataset(rgb, "RGB", 8)))
    assert image.pixels.shape == (32, 40) and image.photometric == "RGB"
    np.testing.assert_allclose(image.pixels, (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, atol=1e-6)
    assert any("converted to grey" in w for w in image.warnings)


@pytest.mark.parametrize(
    ("value", "view"),
    [
        ("PA", "PA"),
        ("AP", "AP"),
        ("LL", "LATERAL"),
        ("RL", "LATERAL"),
        ("LATERAL", "LATERAL"),
        ("LLD", None),
        ("", None),
    ],
)
def test_view_position_is_normalised(tmp_path: Path, value: str, view: str | None) -> None:
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert decode_image(write_dicom(tmp_path / "v.dcm", dicom_dataset(arr, ViewPosition=value))).view == view


def test_no_identifier_reaches_the_decoded_image(tmp_path: Path, ramp12: np.ndarray) -> None:
    image = decode_image(write_dicom(tmp_path / "id.dcm", dicom_dataset(ramp12, bits_stored=12, ViewPosition="PA")))
    fields = {k: v for k, v in vars(image).items() if k != "pixels"}
    assert not any("patient" in name.lower() or "accession" in name.lower() for name in fields)
    text = json.dumps(image.summary()) + repr(fields)
    for value in IDENTIFIERS.values():
        assert value not in text and value.replace("^", " ") not in text


def _pydicom_test_file(name: str) -> Path:
    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return path


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_references_from_pydicom_equal_the_native_file(name: str) -> None:
    native = decode_image(_pydicom_test_file("MR_small.dcm"))
    compressed = decode_image(_pydicom_test_file(name))
    assert compressed.transfer_syntax != native.transfer_syntax
    np.testing.assert_allclose(compressed.pixels, native.pixels, atol=1e-6)
