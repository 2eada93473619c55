"""The real-data index fixture's layout, shared by the tests of this folder (see conftest.py):
which real radiographs stand in for which Open-i images, and the points the rules say to expect."""

from __future__ import annotations

from pathlib import Path

from cxrsearch.data.openi import Study
from cxrsearch.index import IndexOptions

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
GOOD_IMAGES = (
    "CXR1_1_IM-0001-3001",
    "CXR2_IM-0652-1001",
    "CXR3_IM-1384-1001",
    "CXR3_IM-1384-2001",
    "CXR4_IM-2050-1001",
    "CXR6_IM-2192-1001",
    "CXR7_IM-2263-1001",
    "CXR9_IM-2407-1001",
)
BAD_IMAGE = "CXR9_IM-2407-2001"
DICOM_IMAGES = ("CXR2_IM-0652-1001", "CXR3_IM-1384-1001", "CXR3_IM-1384-2001")


def expected_points(studies: list[Study]) -> dict[str, Study]:
    """Point key -> study, written from the rules (not from the planner): one point per good image,
    one per other report with text; the bad image gives none."""
    imaged = {key.split("_IM-")[0].split("_")[0] for key in GOOD_IMAGES + (BAD_IMAGE,)}
    by_uid = {s.uid: s for s in studies}
    keys = {key: by_uid[key.split("_")[0]] for key in GOOD_IMAGES}
    keys.update({s.uid: s for s in studies if s.uid not in imaged and s.report_text()})
    return keys


def index_options(
    reports_tgz: Path, images: Path | None, metadata: Path | None, failures: Path, **changes
) -> IndexOptions:
    """The fixture's index options (the first ``N_REPORTS`` reports, small batches), with ``changes``."""
    values = dict(
        source=reports_tgz,
        images_dir=images,
        metadata=metadata,
        collection=COLLECTION,
        limit=N_REPORTS,
        batch_size=16,
        failures_dir=failures,
    )
    values.update(changes)
    return IndexOptions(**values)
