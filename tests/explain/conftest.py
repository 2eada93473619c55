"""Explain fixtures: the session's ``tiny_checkpoint`` (tests/conftest.py), and a small embedded store
indexed with it from the first real Open-i reports, paired with real radiographs under Open-i names.

Pairing (the Open-i image archives are not on these machines, so real radiographs stand in):
report 1 gets its own PNG, report 2 the non-square CR DICOM ``RG1_UNCR.dcm`` (1955x1841), report 3
the SIIM JPEG-baseline DICOM, report 4 an NIH PNG. Reports 5-8 have no image here: report points.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

N_REPORTS = 8
COLLECTION = "cases"
LINKS = {  # Open-i file name -> real radiograph (relative to images_dir)
    "CXR1_1_IM-0001-3001.png": "png/CXR1_1_IM-0001-3001.png",
    "2_IM-0652-1001.dcm": "dicom/RG1_UNCR.dcm",
    "3_IM-1384-1001.dcm": "dicom/siim_pneumothorax_chest_pa_jpeg_baseline.dcm",
    "CXR4_IM-2050-1001.png": "png/nih_00000001_000.png",
}
REPORT_ONLY = "CXR5"


@dataclass(frozen=True)
class ExplainStore:
    """An embedded store directory holding ``collection``, indexed with ``checkpoint``."""

    store_dir: Path
    collection: str
    checkpoint: Path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):
    """The session checkpoint's model, loaded once (eval mode)."""
    from cxrsearch.model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint).model


@pytest.fixture(scope="session")
def explain_store(
    tiny_checkpoint: Path, images_dir: Path, reports_tgz: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExplainStore]:
    from cxrsearch.index import IndexOptions, index_studies
    from cxrsearch.store.edge import EdgeStore

    root = tmp_path_factory.mktemp("explain_store")
    images = root / "images"
    images.mkdir()
    for name, target in LINKS.items():
        (images / name).symlink_to(images_dir / target)
    store = EdgeStore(root / "store")
    try:
        options = IndexOptions(
            source=reports_tgz,
            images_dir=images,
            collection=COLLECTION,
            limit=N_REPORTS,
            batch_size=8,
            failures_dir=root / "failures",
        )
        report = index_studies(options, store, tiny_checkpoint)
        assert report.failed == 0 and report.image_points == len(LINKS), report
    finally:
        store.close()
    yield ExplainStore(root / "store", COLLECTION, tiny_checkpoint)
