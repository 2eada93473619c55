"""Test-only builders: DICOM files written with pydicom, and a minimal lossless JPEG encoder.

pydicom has encoders for RLE and JPEG 2000 but none for JPEG Lossless (process 14), so
:func:`encode_jpeg_lossless` writes one (ITU T.81 annex H, predictor 1, one fixed Huffman table)
to prove that the decoding side (pylibjpeg-libjpeg) works on that transfer syntax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    generate_uid,
)

IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-4242-XYZ",
    "PatientBirthDate": "19550820",
    "AccessionNumber": "ACC-777-QRS",
    "InstitutionName": "Hospital of Nowhere",
}
"""Identifiers written into every synthetic DICOM; none may reach a DecodedImage."""


def dicom_dataset(
    pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None, **elements: object
) -> Dataset:
    """A CR dataset holding ``pixels`` natively (explicit VR little endian), plus ``elements``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.Modality = "CR"
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    if bits_stored is None:
        bits_stored = 8 if pixels.dtype.itemsize == 1 else 16
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def write_dicom(path: Path, ds: Dataset) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def with_jpeg_lossless(ds: Dataset, pixels: np.ndarray) -> Dataset:
    """Replace the pixel data of a single-sample ``ds`` by a JPEG Lossless SV1 encoding of ``pixels``."""
    ds.PixelData = encapsulate([encode_jpeg_lossless(pixels, int(ds.BitsStored))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    return ds


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """Grey ``(H, W)`` unsigned samples to a JPEG Lossless (SOF3, selection value 1) codestream."""
    height, width = pixels.shape
    x = pixels.astype(np.int64)
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]  # first row: left neighbour
    prediction[1:, 0] = x[:-1, 0]  # first column: the sample above
    prediction[1:, 1:] = x[1:, :-1]  # selection value 1: left neighbour
    diff = (x - prediction) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff).ravel()

    writer = _BitWriter()
    for d in diff.tolist():
        size = 0 if d == 0 else 16 if d == -32768 else abs(d).bit_length()
        writer.write(size, 5)  # fixed table: category k has the 5-bit code k
        if 0 < size < 16:
            writer.write(d if d > 0 else d - 1 + (1 << size), size)
    scan = writer.finish()

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof = bytes([precision]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    dht = bytes([0x00]) + counts + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, Ss=predictor 1, Se=0, Ah/Al=0
    return b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos) + scan + b"\xff\xd9"


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.bits = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.bits += length
        while self.bits >= 8:
            self.bits -= 8
            byte = (self.acc >> self.bits) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)  # byte stuffing
        self.acc &= (1 << self.bits) - 1

    def finish(self) -> bytes:
        if self.bits:
            self.write((1 << (8 - self.bits)) - 1, 8 - self.bits)  # pad with 1-bits
        return bytes(self.out)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` 8-bit grey pixels, with one tiny IDAT."""
    import zlib

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )
