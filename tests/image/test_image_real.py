"""The pipeline on the real radiographs of the shared data folder (``images_dir`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from cxrsearch.image import decode_image
from tests.image.image_builders import write_dicom

SIIM_M2 = "dicom/siim_pneumothorax_chest_pa_jpeg_baseline.dcm"
SIIM_M1 = "dicom/siim_chest_monochrome1_variant.dcm"
RG1 = "dicom/RG1_UNCR.dcm"


def _radiographs(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in (".dcm", ".png", ".jpg", ".jpeg"))


def _stored(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array.astype(np.float64)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _lung_and_mediastinum(pixels: np.ndarray) -> tuple[float, float]:
    """Mean of both mid-height lung fields, and of the mediastinum between them (PA chest)."""
    h, w = pixels.shape
    band = pixels[int(0.35 * h) : int(0.55 * h)]
    right, left = band[:, int(0.22 * w) : int(0.35 * w)], band[:, int(0.65 * w) : int(0.78 * w)]
    lungs = np.concatenate([right.ravel(), left.ravel()])
    return float(lungs.mean()), float(band[:, int(0.46 * w) : int(0.54 * w)].mean())


def test_every_real_radiograph_decodes_to_a_sane_grey_image(images_dir: Path) -> None:
    files = _radiographs(images_dir)
    assert len(files) >= 9
    for path in files:
        image = decode_image(path)
        assert image.pixels.ndim == 2 and image.pixels.dtype == np.float32, path
        assert image.pixels.shape[0] >= 256 and image.pixels.shape[1] >= 256, path
        assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0, path
        assert image.pixels.max() - image.pixels.min() > 0.5, path  # uses the range, not constant
        assert image.pixels.std() > 0.1, path
        assert image.kind == {".dcm": "dicom", ".png": "png"}.get(path.suffix, "jpeg")
        # PA chests are darker in the lungs than in the mediastinum (MONOCHROME2 convention)
        if path.name != "CXR1_1_IM-0001-3001.png" and path.name != Path(SIIM_M1).name:
            lungs, mediastinum = _lung_and_mediastinum(image.pixels)
            assert lungs < mediastinum - 0.1, path


def test_original_geometry_is_kept(images_dir: Path) -> None:
    assert decode_image(images_dir / RG1).pixels.shape == (1955, 1841)
    assert decode_image(images_dir / "png/CXR1_1_IM-0001-3001.png").pixels.shape == (2828, 2320)
    assert decode_image(images_dir / "png/padchest_16747_3_1.jpg").pixels.shape == (885, 1036)


def test_jpeg_baseline_dicom_decodes(images_dir: Path) -> None:
    image = decode_image(images_dir / SIIM_M2)
    assert image.transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert image.transfer_syntax_name == "JPEG Baseline (Process 1)"
    assert image.photometric == "MONOCHROME2" and image.bits_stored == 8 and image.view == "PA"
    assert image.pixels.shape == (1024, 1024)
    # no VOI in the file: min-max over the stored values
    stored = _stored(images_dir / SIIM_M2)
    np.testing.assert_allclose(image.pixels, (stored - stored.min()) / (stored.max() - stored.min()), atol=1e-6)


def test_monochrome1_variant_is_inverted_relative_to_its_sibling(images_dir: Path) -> None:
    """The variant has the sibling's pixel data under a MONOCHROME1 header.

    Without inversion (the stored arrays) the two are the same image: correlation +1. With the
    pipeline's inversion the variant is the negative of its sibling: correlation -1.
    """
    stored_m1, stored_m2 = _stored(images_dir / SIIM_M1), _stored(images_dir / SIIM_M2)
    assert _corr(stored_m1, stored_m2) > 0.99  # skipping the inversion: identical

    m1, m2 = decode_image(images_dir / SIIM_M1), decode_image(images_dir / SIIM_M2)
    assert m1.photometric == "MONOCHROME1" and "inverted" in m1.intensity_mapping
    assert _corr(m1.pixels, m2.pixels) < -0.99  # after the inversion: the negative
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert _corr(m1.pixels, stored_m1) < -0.99 and _corr(m2.pixels, stored_m2) > 0.99


def test_a_genuine_monochrome1_file_comes_out_like_its_monochrome2_sibling(images_dir: Path, tmp_path: Path) -> None:
    """A real MONOCHROME1 acquisition stores the negative: stored correlation strongly negative,
    decoded correlation strongly positive (the same picture on screen)."""
    ds = pydicom.dcmread(images_dir / SIIM_M2)
    negative = (255 - ds.pixel_array).astype(np.uint8)
    ds.set_pixel_data(negative, "MONOCHROME1", 8)
    path = write_dicom(tmp_path / "genuine_m1.dcm", ds)

    assert _corr(_stored(path), _stored(images_dir / SIIM_M2)) < -0.99  # before inversion
    decoded, sibling = decode_image(path), decode_image(images_dir / SIIM_M2)
    assert _corr(decoded.pixels, sibling.pixels) > 0.99  # after inversion
    np.testing.assert_allclose(decoded.pixels, sibling.pixels, atol=1e-6)


def test_rg1_monochrome1_15_bit_cr_has_dark_lungs(images_dir: Path) -> None:
    image = decode_image(images_dir / RG1)
    assert (image.photometric, image.bits_stored, image.view, image.modality) == ("MONOCHROME1", 15, "PA", "CR")
    assert image.source_dtype == "uint16" and image.stored_max < 2**15
    assert image.intensity_mapping.startswith("window centre 15000 width 30000 (LINEAR)")
    lungs, mediastinum = _lung_and_mediastinum(image.pixels)
    assert lungs < mediastinum - 0.15
    stored = _stored(images_dir / RG1)
    expected = 1.0 - np.clip((stored - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)  # window then inversion
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


@pytest.mark.parametrize("source", [SIIM_M1, RG1])
def test_lossless_syntaxes_decode_identically_to_native(images_dir: Path, tmp_path: Path, source: str) -> None:
    """Real pixels (a crop, for speed) re-encoded with RLE, JPEG 2000 and JPEG Lossless."""
    from tests.image.image_builders import with_jpeg_lossless

    ds = pydicom.dcmread(images_dir / source)
    crop = np.ascontiguousarray(ds.pixel_array[600:856, 700:956])
    bits = int(ds.BitsStored)
    ds.set_pixel_data(crop, ds.PhotometricInterpretation, bits)
    native = decode_image(write_dicom(tmp_path / "native.dcm", ds))
    for name in ("rle", "j2k", "jpeg_lossless"):
        copy = pydicom.dcmread(tmp_path / "native.dcm")
        if name == "rle":
            copy.compress(RLELossless)
        elif name == "j2k":
            copy.compress(JPEG2000Lossless)
        else:
            with_jpeg_lossless(copy, crop)
        decoded = decode_image(write_dicom(tmp_path / f"{name}.dcm", copy))
        assert decoded.transfer_syntax == str(copy.file_meta.TransferSyntaxUID)
        np.testing.assert_array_equal(decoded.pixels, native.pixels, err_msg=name)


def test_decoded_dicom_metadata_carries_no_patient_identifiers(images_dir: Path) -> None:
    for path in sorted((images_dir / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        secrets = [
            str(ds.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber") if ds.get(k)
        ]
        assert secrets, path
        image = decode_image(path)
        text = json.dumps(image.summary()) + repr({k: v for k, v in vars(image).items() if k != "pixels"})
        for secret in secrets:
            assert secret not in text, (path, secret)
