"""Download the Open-i chest X-ray collection from NLM (or a mirror) into a data folder.

``download_openi(dest, images="none" | "png" | "dicom")`` leaves this layout under ``dest``::

    NLMCXR_reports.tgz (+ .sha256)   kept as a tarball: cxrsearch.data.openi.load_studies reads it directly
    NLMCXR_png.tgz     (+ .sha256)   the image archive, kept after extraction (safe to delete then)
    images/png/...                   its members, extracted as laid out in the archive
    images/dicom/...                 likewise for NLMCXR_dcm.tgz

Where the files come from and what is known about them (sizes, checksums and *where those values
come from*) is in ``cxrsearch/data/sources.json``. The base URL is the official NLM one unless
``url`` (the CLI's ``--base-url``) or the ``CXRSEARCH_OPENI_URL`` environment variable names a
mirror. Each step is idempotent: a verified archive is not fetched again, a completed extraction
(see :data:`cxrsearch.data.extract.MARKER`) is not redone, and an interrupted transfer resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cxrsearch.data.extract import read_marker, safe_extract
from cxrsearch.data.fetch import fetch, sidecar_path
from cxrsearch.errors import ConfigError, DownloadError
from cxrsearch.progress import ProgressCallback

URL_ENV = "CXRSEARCH_OPENI_URL"
IMAGE_CHOICES = ("none", "png", "dicom")


@dataclass(frozen=True)
class SourceFile:
    """One downloadable archive. ``size``/``sha256`` are None when not known in advance;
    ``checksum_origin`` says where known values come from; ``extract_to`` is the folder (relative to
    the data folder) the archive is extracted into, or None when the archive is used as it is."""

    key: str
    filename: str
    description: str
    size: int | None
    sha256: str | None
    checksum_origin: str
    extract_to: str | None


@dataclass(frozen=True)
class Dataset:
    name: str
    base_url: str
    licence: str
    files: Mapping[str, SourceFile]


@dataclass(frozen=True)
class DownloadedFile:
    """What one archive's download did. ``status``: ``"downloaded"``, ``"resumed"`` (a ``.part`` was
    continued from byte ``resumed_from``) or ``"present"`` (already complete and verified, or already
    extracted). ``extracted_to``/``files``: the extraction folder and its regular-file count (None for
    an archive that is kept as is). ``size`` is None when only an extraction record was left."""

    key: str
    url: str
    archive: Path
    size: int | None
    sha256: str
    status: str
    resumed_from: int
    extracted_to: Path | None
    files: int | None


def load_dataset(name: str) -> Dataset:
    """The named dataset's sources from the packaged manifest; ConfigError for an unknown name."""
    manifest = _manifest()
    if name not in manifest:
        raise ConfigError(f"unknown dataset; available: {', '.join(sorted(manifest))}", name)
    entry = manifest[name]
    files = {
        key: SourceFile(
            key=key,
            filename=f["filename"],
            description=f["description"],
            size=f.get("size"),
            sha256=f.get("sha256"),
            checksum_origin=f["checksum_origin"],
            extract_to=f.get("extract_to"),
        )
        for key, f in entry["files"].items()
    }
    return Dataset(name=name, base_url=entry["base_url"], licence=entry["licence"], files=files)


def resolve_base_url(dataset: Dataset, override: str | None = None) -> str:
    """``override`` (the ``--base-url`` flag), else ``$CXRSEARCH_OPENI_URL``, else the official URL."""
    for value in (override, os.environ.get(URL_ENV)):
        if value:
            if not value.startswith(("http://", "https://")):
                raise ConfigError("the download base URL must start with http:// or https://", value)
            return value.rstrip("/") + "/"
    return dataset.base_url


def download_openi(
    dest: Path,
    images: str = "none",
    url: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 60.0,
    dataset: Dataset | None = None,
) -> tuple[DownloadedFile, ...]:
    """Fetch (and verify, and extract) the Open-i reports and optionally one image set into ``dest``.

    ``dataset`` defaults to the packaged Open-i manifest (tests and mirrors of re-packed archives pass
    their own). Returns one :class:`DownloadedFile` per archive, reports first.
    """
    if images not in IMAGE_CHOICES:
        raise ConfigError(f"--images must be one of {', '.join(IMAGE_CHOICES)}", images)
    dataset = dataset if dataset is not None else load_dataset("openi")
    base = resolve_base_url(dataset, url)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ConfigError("the download destination is not a folder", dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download folder: {exc.strerror or exc}", dest) from None
    keys = ["reports"] + ([] if images == "none" else [images])
    return tuple(_download_one(dataset.files[key], base, dest, progress, timeout) for key in keys)


def _download_one(
    src: SourceFile, base: str, dest: Path, progress: ProgressCallback | None, timeout: float
) -> DownloadedFile:
    url = base + src.filename
    archive = dest / src.filename
    target = dest / src.extract_to if src.extract_to else None
    if target is not None:
        record = read_marker(target)
        if record is not None:  # extracted by an earlier run: nothing to fetch, even if the archive was deleted
            size = archive.stat().st_size if archive.is_file() else None
            return DownloadedFile(
                src.key, url, archive, size, record["sha256"], "present", 0, target, record.get("files")
            )
    result = fetch(url, archive, expected_size=src.size, expected_sha256=src.sha256, progress=progress, timeout=timeout)
    status = "present" if not result.fetched else ("resumed" if result.resumed_from else "downloaded")
    files = None
    if target is not None:
        try:
            files = safe_extract(archive, target, result.sha256, progress).files
        except DownloadError as exc:
            if not exc.message.startswith("refused"):
                raise
            # a refused archive is never kept: with its recorded checksum it would be "present" on every
            # rerun and refused again, without a word about deleting it
            archive.unlink(missing_ok=True)
            sidecar_path(archive).unlink(missing_ok=True)
            raise DownloadError(
                f"{exc.message}; the archive was deleted, so a rerun downloads it afresh", path=exc.path
            ) from None
    return DownloadedFile(src.key, url, archive, result.size, result.sha256, status, result.resumed_from, target, files)


def _manifest() -> dict:
    return json.loads(Path(__file__).with_name("sources.json").read_text(encoding="utf-8"))
