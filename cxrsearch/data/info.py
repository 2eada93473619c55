"""A summary of an Open-i dataset on disk (what ``cxrsearch data info`` shows)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cxrsearch.data.labels import label_names
from cxrsearch.data.openi import load_studies, locate_reports
from cxrsearch.data.pairing import index_images, load_photometric_table, load_view_table
from cxrsearch.data.splits import SPLITS

METADATA_CSV = "nlmcxr_dicom_metadata.csv.gz"


@dataclass(frozen=True)
class DatasetInfo:
    """Counts over every report of ``source``.

    ``labels`` holds every vocabulary label (zero counts included) in head order: the number of
    reports carrying it. ``unlabelled`` counts reports with no vocabulary label (``No Indexing``, or
    only headings outside the vocabulary). ``images_found`` counts image references whose file is
    in ``images_dir`` (``None`` when no images folder was given); ``views`` counts image references
    by view position from the metadata table (``None`` when no table was given; ``"unknown"`` for
    references the table has no view for). ``monochrome1``: image references whose DICOM was
    MONOCHROME1 by the metadata table (their PNGs may be stored as negatives, which decoding inverts:
    :mod:`cxrsearch.image.polarity`); ``None`` without a table.
    """

    source: str
    reports: int
    image_refs: int
    reports_without_images: int
    unlabelled: int
    labels: dict[str, int]
    splits: dict[str, int]
    images_dir: str | None
    images_found: int | None
    views: dict[str, int] | None
    monochrome1: int | None = None


def find_companions(folder: str | Path) -> tuple[Path | None, Path | None]:
    """The images folder and metadata table that belong with a data folder, when present.

    ``<folder>/images`` (where ``cxrsearch data download --images`` extracts) and
    ``<folder>/nlmcxr_dicom_metadata.csv.gz`` or ``<folder>/openi/nlmcxr_dicom_metadata.csv.gz``.
    Anything missing is ``None``; a path to a file (an archive) has no companions.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None, None
    images = folder / "images"
    tables = [folder / METADATA_CSV, folder / "openi" / METADATA_CSV]
    metadata = next((table for table in tables if table.is_file()), None)
    return (images if images.is_dir() else None), metadata


def dataset_info(
    source: str | Path,
    images_dir: str | Path | None = None,
    metadata: str | Path | None = None,
) -> DatasetInfo:
    """Summarise the reports of ``source`` (see :func:`~cxrsearch.data.openi.load_studies`), and
    optionally which referenced images exist under ``images_dir`` and their views from ``metadata``."""
    located = locate_reports(source)
    studies = load_studies(located)
    image_ids = [image_id for study in studies for image_id in study.image_ids]

    label_counts = Counter(label for study in studies for label in study.labels)
    split_counts = Counter(study.split for study in studies)

    images_found = None
    if images_dir is not None:
        index = index_images(images_dir)
        images_found = sum(1 for image_id in image_ids if image_id in index)

    views = monochrome1 = None
    if metadata is not None:
        table = load_view_table(metadata)
        view_counts = Counter(table.get(image_id, "unknown") for image_id in image_ids)
        views = {name: view_counts[name] for name in ("PA", "AP", "LATERAL", "unknown")}
        photometric = load_photometric_table(metadata)
        monochrome1 = sum(1 for image_id in image_ids if photometric.get(image_id) == "MONOCHROME1")

    return DatasetInfo(
        source=str(located),
        reports=len(studies),
        image_refs=len(image_ids),
        reports_without_images=sum(1 for study in studies if not study.image_ids),
        unlabelled=sum(1 for study in studies if not study.labels),
        labels={name: label_counts[name] for name in label_names()},
        splits={name: split_counts[name] for name in SPLITS},
        images_dir=None if images_dir is None else str(images_dir),
        images_found=images_found,
        views=views,
        monochrome1=monochrome1,
    )
