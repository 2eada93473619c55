"""PNG and JPEG through Pillow: bit depths, colour, alpha, orientation, and type by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrsearch.image import decode_image, sniff_kind


def _save(path: Path, arr: np.ndarray, mode: str | None = None, **params: object) -> Path:
    image = Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)
    image.save(path, **params)
    return path


def test_8_bit_png_is_divided_by_255(tmp_path: Path) -> None:
    arr = np.arange(0, 250, dtype=np.uint8).reshape(10, 25)
    image = decode_image(_save(tmp_path / "g8.png", arr))
    np.testing.assert_allclose(image.pixels, arr / 255.0, atol=1e-7)
    facts = (image.kind, image.photometric, image.bits_stored, image.view, image.warnings)
    assert facts == ("png", "MONOCHROME2", 8, None, ())


def test_16_bit_png_keeps_its_full_range(tmp_path: Path) -> None:
    arr = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    image = decode_image(_save(tmp_path / "g16.png", arr))
    assert image.bits_stored == 16 and image.source_dtype == "uint16"
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    np.testing.assert_allclose(image.pixels, arr / 65535.0, atol=1e-6)
    assert len(np.unique(image.pixels)) > 3000  # not squashed to 8 bits
    assert image.warnings == ()


def test_16_bit_png_with_12_bit_values_warns(tmp_path: Path) -> None:
    arr = np.linspace(0, 4000, 64 * 48).reshape(48, 64).astype(np.uint16)
    image = decode_image(_save(tmp_path / "g12.png", arr))
    assert image.pixels.max() == pytest.approx(4000 / 65535)
    assert any("12 significant bits" in w for w in image.warnings)


def test_rgb_png_becomes_grey_with_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = _save(tmp_path / "rgb.png", rgb)
    image = decode_image(path)
    assert image.pixels.shape == (40, 30) and image.photometric == "RGB"
    pillow_grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(image.pixels, pillow_grey, atol=1.01 / 255)  # same BT.601 weights
    assert any("converted to grey" in w for w in image.warnings)


def test_grey_stored_as_rgb_is_read_exactly(tmp_path: Path) -> None:
    grey = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    image = decode_image(_save(tmp_path / "rgbgrey.png", np.stack([grey] * 3, axis=-1)))
    np.testing.assert_array_equal(image.pixels, decode_image(_save(tmp_path / "grey.png", grey)).pixels)
    assert image.warnings == ("RGB image with three equal channels read as grey",)


def test_alpha_and_palette_are_reported(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 90, 128
    assert "alpha channel ignored" in decode_image(_save(tmp_path / "rgba.png", rgba)).warnings

    la = np.stack([np.full((8, 8), 77, np.uint8), np.full((8, 8), 255, np.uint8)], axis=-1)
    image = decode_image(_save(tmp_path / "la.png", la, "LA"))
    assert image.pixels[0, 0] == pytest.approx(77 / 255) and "alpha channel ignored" in image.warnings

    palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    palette.save(tmp_path / "p.png")
    image = decode_image(tmp_path / "p.png")
    assert image.photometric == "PALETTE COLOR" and "palette image" in image.warnings


def test_bilevel_png(tmp_path: Path) -> None:
    image = decode_image(_save(tmp_path / "bw.png", np.eye(8, dtype=bool)))
    assert image.bits_stored == 1 and set(np.unique(image.pixels)) == {0.0, 1.0}


def test_jpeg_decodes_close_to_its_source(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:64, 0:80]
    arr = ((yy + xx) * 255 / 142).astype(np.uint8)
    image = decode_image(_save(tmp_path / "g.jpg", arr, quality=95))
    assert image.kind == "jpeg" and image.pixels.shape == (64, 80)
    assert np.abs(image.pixels - arr / 255.0).mean() < 0.01


def test_exif_orientation_is_applied_with_a_warning(tmp_path: Path) -> None:
    arr = np.zeros((20, 50), np.uint8)
    arr[:, :10] = 255  # a bright left edge
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    image = decode_image(tmp_path / "rot.jpg")
    assert image.pixels.shape == (50, 20)
    assert image.pixels[:10].mean() > 0.9 and image.pixels[-10:].mean() < 0.1  # left edge became the top
    assert any("EXIF orientation 6" in w for w in image.warnings)


def test_type_is_decided_by_content_not_extension(tmp_path: Path, images_dir: Path) -> None:
    png_named_dcm = tmp_path / "actually_png.dcm"
    png_named_dcm.write_bytes((images_dir / "png" / "nih_00000001_000.png").read_bytes())
    dcm_named_png = tmp_path / "actually_dicom.png"
    dcm_named_png.write_bytes((images_dir / "dicom" / "siim_pneumothorax_chest_pa_jpeg_baseline.dcm").read_bytes())
    jpg_no_suffix = tmp_path / "radiograph"
    jpg_no_suffix.write_bytes((images_dir / "png" / "padchest_16747_3_1.jpg").read_bytes())
    assert [sniff_kind(p) for p in (png_named_dcm, dcm_named_png, jpg_no_suffix)] == ["png", "dicom", "jpeg"]
    assert decode_image(png_named_dcm).kind == "png"
    assert decode_image(dcm_named_png).kind == "dicom"
    assert decode_image(jpg_no_suffix).pixels.shape == (885, 1036)
