"""Finding the Open-i data a command works on: the reports (``--data``, else the data folder, else a
download into it) and the images folder and DICOM metadata table that belong with them.

``cxrsearch demo`` and ``cxrsearch data info`` (without an argument) both discover their data here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrsearch import paths
from cxrsearch.data.download import download_openi
from cxrsearch.data.info import find_companions
from cxrsearch.data.openi import locate_reports
from cxrsearch.errors import ConfigError, DownloadError, ReportError


@dataclass(frozen=True)
class FoundData:
    """Where the reports are (``origin``: ``"--data"``, ``"data folder"`` or ``"downloaded"``) and the
    companions found with them (``None`` where absent)."""

    reports: Path
    images: Path | None
    metadata: Path | None
    origin: str


def find_data(source: Path | None = None, *, download: bool = True, hint: str = "--data DIR") -> FoundData:
    """Locate the Open-i reports and their companions.

    ``source`` (reports tgz, XML folder or data folder) when given; else the data folder
    (``$CXRSEARCH_DATA``, else the per-user default), where the reports (1.1 MB) are downloaded
    when missing and ``download`` allows it. Raises :class:`~cxrsearch.errors.ConfigError` saying
    what to set when the data folder holds no reports (``hint``: how the command takes a source).

    The images folder and metadata table (:func:`~cxrsearch.data.info.find_companions`) are those of
    the folder pointed at (``source`` or the data folder); when that is a file or holds neither,
    those of the folder holding the reports, else of its parent.
    """

    if source is not None:
        pointed, reports, origin = source, locate_reports(source), "--data"
    else:
        pointed = paths.data_dir()
        reports, origin = _reports_in_data_folder(pointed, download, hint)
    home = reports.parent if reports.is_file() else reports
    images, metadata = _companions(pointed, home, home.parent)
    return FoundData(reports=reports, images=images, metadata=metadata, origin=origin)


def _reports_in_data_folder(folder: Path, download: bool, hint: str) -> tuple[Path, str]:

    try:
        return locate_reports(folder), "data folder"
    except ReportError:
        if not download:
            raise _no_data(folder, hint) from None

    try:
        download_openi(folder, images="none")
    except DownloadError as exc:
        raise _no_data(folder, hint, f"downloading them failed: {exc}") from None
    return locate_reports(folder), "downloaded"


def _companions(*folders: Path) -> tuple[Path | None, Path | None]:
    """The companions of the first of ``folders`` that has any."""

    for folder in dict.fromkeys(folders):  # in order, each once
        images, metadata = find_companions(folder)
        if images is not None or metadata is not None:
            return images, metadata
    return None, None


def _no_data(folder: Path, hint: str, why: str | None = None) -> ConfigError:
    because = f" and {why}" if why else ""
    return ConfigError(
        f"no Open-i reports in the data folder{because}; set CXRSEARCH_DATA to a folder holding "
        f"NLMCXR_reports.tgz (`cxrsearch data download openi` fetches it), or pass {hint}",
        path=folder,
    )
