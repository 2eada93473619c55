"""Index + search fixtures on real data: the first reports of the real Open-i archive, paired with the
real radiographs of ``images_dir`` (linked under Open-i names), indexed once per backend.

Pairing: ``CXR1_1_IM-0001-3001.png`` is report 1's own radiograph; the other real radiographs (DICOM
CR/JPEG-baseline/MONOCHROME1, NIH and TBX11K PNGs, a JPEG) stand in for images of reports 2-9 (the
Open-i image archives are not on these machines). One text file named like an image of report 9
is the undecodable file every run must report while indexing the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxrsearch.data.openi import Study, load_studies
from cxrsearch.index import IndexOptions, IndexReport, index_studies
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import EdgeStore

N_REPORTS = 120
COLLECTION = "cases"

LINKS = {  # file name in the Open-i images folder -> real radiograph (relative to images_dir)
    "png/CXR1_1_IM-0001-3001.png": "png/CXR1_1_IM-0001-3001.png",
    "dicom/2_IM-0652-1001.dcm": "dicom/RG1_UNCR.dcm",
    "dicom/3_IM-1384-1001.dcm": "dicom/siim_pneumothorax_chest_pa_jpeg_baseline.dcm",
    "dicom/3_IM-1384-2001.dcm": "dicom/siim_chest_monochrome1_variant.dcm",
    "png/CXR4_IM-2050-1001.png": "png/nih_00000001_000.png",
    "png/CXR6_IM-2192-1001.png": "png/tbx11k_h0001_rgb.png",
    "png/CXR7_IM-2263-1001.jpg": "png/padchest_16747_3_1.jpg",
    "png/CXR9_IM-2407-1001.png": "png/nih_00027426_000.png",
}
GOOD_IMAGES = ("CXR1_1_IM-0001-3001", "CXR2_IM-0652-1001", "CXR3_IM-1384-1001", "CXR3_IM-1384-2001",
               "CXR4_IM-2050-1001", "CXR6_IM-2192-1001", "CXR7_IM-2263-1001", "CXR9_IM-2407-1001")
BAD_IMAGE = "CXR9_IM-2407-2001"
DICOM_IMAGES = ("CXR2_IM-0652-1001", "CXR3_IM-1384-1001", "CXR3_IM-1384-2001")


@pytest.fixture(scope="session")
def openi_images(images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of Open-i-named links to the real radiographs, plus one undecodable file."""
    root = tmp_path_factory.mktemp("openi_images")
    for name, target in LINKS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(images_dir / target)
    (root / "png" / f"{BAD_IMAGE}.png").write_text("this is a text file, not a radiograph\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def studies(reports_tgz: Path) -> list[Study]:
    """The reports the fixtures index (the first ``N_REPORTS`` by number)."""
    return load_studies(reports_tgz)[:N_REPORTS]


def expected_points(studies: list[Study]) -> dict[str, Study]:
    """Point key -> study, written from the rules (not from the planner): one point per good image,
    one per other report with text; the bad image gives none."""
    imaged = {key.split("_IM-")[0].split("_")[0] for key in GOOD_IMAGES + (BAD_IMAGE,)}
    by_uid = {s.uid: s for s in studies}
    keys = {key: by_uid[key.split("_")[0]] for key in GOOD_IMAGES}
    keys.update({s.uid: s for s in studies if s.uid not in imaged and s.report_text()})
    return keys


@dataclass
class Indexed:
    """A store holding the fixture's points (``report``: what indexing returned)."""

    backend: str
    store: object
    collection: str
    report: IndexReport
    expected: dict[str, Study]
    checkpoint: Path


def index_options(reports_tgz: Path, images: Path, metadata: Path, failures: Path, **changes) -> IndexOptions:
    values = dict(source=reports_tgz, images_dir=images, metadata=metadata, collection=COLLECTION, limit=N_REPORTS,
                  batch_size=16, failures_dir=failures)
    values.update(changes)
    return IndexOptions(**values)


@pytest.fixture(scope="session", params=["edge", "memory"])
def indexed(request: pytest.FixtureRequest, tiny_checkpoint: Path, openi_images: Path, reports_tgz: Path,
            real_data: Path, studies: list[Study], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    root = tmp_path_factory.mktemp(f"indexed-{request.param}")
    store = EdgeStore(root / "store") if request.param == "edge" else ClientStore.in_memory()
    options = index_options(reports_tgz, openi_images, real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz", root / "failures")
    report = index_studies(options, store, tiny_checkpoint)
    yield Indexed(request.param, store, COLLECTION, report, expected_points(studies), tiny_checkpoint)
    store.close()
