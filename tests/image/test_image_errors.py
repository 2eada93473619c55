"""Broken and unsupported inputs: every one raises ImageError naming the file and the reason.

No pydicom or Pillow exception may escape raw, and the size guard must refuse absurd dimensions
before any pixel is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrsearch.errors import CxrSearchError, ImageError
from cxrsearch.image import MAX_SIDE, decode_image, sniff_kind
from tests.image.image_builders import dicom_dataset, png_declaring, write_dicom

SIIM = "dicom/siim_pneumothorax_chest_pa_jpeg_baseline.dcm"


def _refused(path: Path, *reason: str) -> ImageError:
    """Decode ``path``; it must raise ImageError whose text names the file and every ``reason``."""
    with pytest.raises(ImageError) as info:
        decode_image(path)
    error = info.value
    assert isinstance(error, CxrSearchError) and error.path == str(path)
    assert str(error).startswith(f"{path}: ")
    for word in reason:
        assert word in error.message, (word, error.message)
    return error


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.png", "no such file")
    _refused(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    _refused(tmp_path / "empty.dcm", "empty file")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(b"\x93\x01" + np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _refused(path, "not a DICOM, PNG or JPEG file", "unrecognised binary content")


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"Findings: no acute disease.\n" * 20, "a text file"),
        (b'<?xml version="1.0"?><eCitation><MedlineCitation/></eCitation>', "XML"),
        (b"GIF89a" + bytes(40), "GIF"),
        (b"II*\x00" + bytes(40), "TIFF"),
    ],
)
def test_other_content_is_named(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "image.jpg"
    path.write_bytes(content)
    _refused(path, what)


def test_dicom_without_part10_header(tmp_path: Path) -> None:
    ds = dicom_dataset(np.zeros((8, 8), np.uint8))
    path = tmp_path / "raw.dcm"
    del ds.file_meta  # a bare dataset: no 128-byte preamble, no 'DICM', no file meta
    ds.save_as(path, enforce_file_format=False, implicit_vr=False, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    _refused(path, "without the Part 10 header")
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    _refused(path, "without the Part 10 header")


def test_truncated_png(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / "png" / "nih_00000001_000.png").read_bytes()
    for cut in (len(data) // 2, 60):
        path = tmp_path / f"cut{cut}.png"
        path.write_bytes(data[:cut])
        _refused(path, "PNG", "truncated or corrupt")


def test_truncated_jpeg(tmp_path: Path, images_dir: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes((images_dir / "png" / "padchest_16747_3_1.jpg").read_bytes()[:300])
    _refused(path, "JPEG data cannot be decoded")


def test_truncated_native_dicom(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "pixel data cannot be decoded", "truncated or corrupt", "less than expected")


def test_truncated_compressed_dicom(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / SIIM).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated")


def test_truncated_dicom_header(tmp_path: Path, images_dir: Path) -> None:
    path = tmp_path / "header_only.dcm"
    path.write_bytes((images_dir / SIIM).read_bytes()[:400])
    _refused(path)


def test_corrupt_compressed_pixel_data(tmp_path: Path, images_dir: Path) -> None:
    data = bytearray((images_dir / SIIM).read_bytes())
    soi = data.index(b"\xff\xd8\xff", 132)  # start of the JPEG codestream inside the pixel data
    data[soi + 2 : soi + 400] = bytes(398)  # wipe its tables and frame header
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(bytes(data))
    _refused(path, "pixel data cannot be decoded")


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = dicom_dataset(np.zeros((8, 8), np.uint8))
    del ds.PixelData
    _refused(write_dicom(tmp_path / "nopix.dcm", ds), "no pixel data")


def test_multi_frame_dicom(tmp_path: Path) -> None:
    frames = np.stack([np.full((16, 16), i * 40, np.uint8) for i in range(3)])
    ds = dicom_dataset(frames)
    assert ds.NumberOfFrames == 3
    _refused(write_dicom(tmp_path / "multi.dcm", ds), "multi-frame", "3 frames")


@pytest.mark.parametrize("photometric", ["PALETTE COLOR", "HSV", ""])
def test_unsupported_photometric(tmp_path: Path, photometric: str) -> None:
    ds = dicom_dataset(np.zeros((8, 8), np.uint8))
    ds.PhotometricInterpretation = photometric
    _refused(write_dicom(tmp_path / "pi.dcm", ds), "unsupported photometric interpretation")


def test_inconsistent_bit_depth(tmp_path: Path) -> None:
    ds = dicom_dataset(np.zeros((8, 8), np.uint16), bits_stored=12)
    ds.BitsStored = 20
    _refused(write_dicom(tmp_path / "bits.dcm", ds), "invalid bit depth")


def test_huge_declared_dicom_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = dicom_dataset(np.zeros((8, 8), np.uint16), bits_stored=12)
    ds.Rows, ds.Columns = 60000, 60000
    path = write_dicom(tmp_path / "bomb.dcm", ds)

    def _no_decoding(self):  # the guard must fire before pixel data is touched
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(_no_decoding))
    _refused(path, "60000 rows x 60000 columns", "decompression-bomb guard")


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (MAX_SIDE + 1, 16), (12_000, 9_000)])
def test_huge_declared_png_is_refused_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(width, height))
    _refused(path, "decompression-bomb")


def test_huge_declared_jpeg_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "small.jpg")
    data = bytearray((tmp_path / "small.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (40000).to_bytes(2, "big") + (40000).to_bytes(2, "big")  # height, width
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    _refused(path, "decompression-bomb")


def test_sniff_kind_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImageError, match="text file") as info:
        sniff_kind(path)
    assert info.value.path == str(path)


def test_pydicom_sample_files_decode_or_raise_image_error() -> None:
    """pydicom's own odd files (no meta, big endian, SR, RT, palette, multi-frame, broken codecs):
    each one either decodes to a valid image or raises ImageError, never a raw library exception."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    files = sorted(folder.glob("*.dcm"))
    if not files:
        pytest.skip("pydicom ships no sample files here")
    decoded = refused = 0
    for path in files:
        try:
            image = decode_image(path)
        except ImageError as error:
            assert error.path == str(path) and error.message
            refused += 1
        else:
            assert image.pixels.ndim == 2 and 0.0 <= image.pixels.min() <= image.pixels.max() <= 1.0, path
            decoded += 1
    assert decoded >= 20 and refused >= 10
