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
from cxrsearch.index import IndexReport, index_studies
from cxrsearch.store.client import ClientStore
from cxrsearch.store.edge import EdgeStore
from tests.search.layout import BAD_IMAGE, COLLECTION, LINKS, N_REPORTS, expected_points, index_options


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


@dataclass
class Indexed:
    """A store holding the fixture's points (``report``: what indexing returned)."""

    backend: str
    store: object
    collection: str
    report: IndexReport
    expected: dict[str, Study]
    checkpoint: Path


@pytest.fixture(scope="session", params=["edge", "memory"])
def indexed(
    request: pytest.FixtureRequest,
    tiny_checkpoint: Path,
    openi_images: Path,
    reports_tgz: Path,
    real_data: Path,
    studies: list[Study],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Indexed]:
    root = tmp_path_factory.mktemp(f"indexed-{request.param}")
    store = EdgeStore(root / "store") if request.param == "edge" else ClientStore.in_memory()
    options = index_options(
        reports_tgz, openi_images, real_data / "openi" / "nlmcxr_dicom_metadata.csv.gz", root / "failures"
    )
    report = index_studies(options, store, tiny_checkpoint)
    yield Indexed(request.param, store, COLLECTION, report, expected_points(studies), tiny_checkpoint)
    store.close()
