"""Safe, atomic extraction of a downloaded tar archive.

Every member is checked before it is written: absolute paths, ``..`` components, links that point
outside the target, device files and FIFOs are refused with a
:class:`~cxrsearch.errors.DownloadError` naming the member. Python's own ``filter="data"`` runs as a
second line of defence. Members are written into a staging folder next to the target
(``.<target name>.extracting``) that is renamed onto the target only when the whole archive has been
extracted, with a marker file recording what was extracted; a refused or broken archive leaves
neither a half-filled target nor anything outside it.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from cxrsearch.errors import DownloadError
from cxrsearch.progress import ProgressCallback, ProgressEvent

MARKER = ".cxrsearch-extracted.json"
"""Written inside a completed extraction: ``{"archive", "sha256", "members", "files", "bytes"}``."""


@dataclass(frozen=True)
class ExtractResult:
    """``members``: archive entries extracted; ``files``/``bytes``: regular files and their total size."""

    archive: Path
    target: Path
    sha256: str
    members: int
    files: int
    bytes: int


def read_marker(target: Path) -> dict | None:
    """The record of a completed extraction into ``target``, or None when there is none."""
    marker = Path(target) / MARKER
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"unreadable extraction record ({exc}); remove the folder to extract again", marker
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise DownloadError("not an extraction record; remove the folder to extract again", marker)
    return record


def check_member(member: tarfile.TarInfo, archive_name: str = "archive") -> None:
    """Refuse a member that could write outside the extraction folder or create a special file."""
    name = member.name
    where = f"{archive_name} member {name!r}"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise DownloadError("refused: absolute path", where)
    if ".." in name.replace("\\", "/").split("/"):
        raise DownloadError("refused: path traversal ('..')", where)
    if member.ischr() or member.isblk() or member.isfifo():
        raise DownloadError("refused: device file or FIFO", where)
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith(("/", "\\")) or PureWindowsPath(link).drive:
            raise DownloadError(f"refused: link to the absolute path {link!r}", where)
        # symlinks are relative to their own folder, hard links to the archive root
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if resolved == ".." or resolved.startswith("../"):
            raise DownloadError(f"refused: link {link!r} points outside the extraction folder", where)
    elif not (member.isfile() or member.isdir()):
        raise DownloadError("refused: unsupported member type", where)


def safe_extract(archive: Path, target: Path, sha256: str, progress: ProgressCallback | None = None) -> ExtractResult:
    """Extract ``archive`` into ``target`` (which must not exist yet), all or nothing.

    ``sha256`` is the archive's verified checksum, recorded in the marker so a later run can tell the
    extraction is complete. Progress is reported as compressed bytes read (stage ``"extract"``).
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DownloadError("already exists and is not a completed extraction; remove it to extract again", target)
    staging = target.with_name(f".{target.name}.extracting")
    if staging.exists():  # left by an interrupted run of ours: start over
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    counts = {"members": 0, "files": 0, "bytes": 0}
    total = archive.stat().st_size
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:

            def checked() -> Iterator[tarfile.TarInfo]:
                for member in tar:
                    check_member(member, archive.name)
                    counts["members"] += 1
                    if member.isfile():
                        counts["files"] += 1
                        counts["bytes"] += member.size
                    yield member
                    if progress:
                        progress(ProgressEvent("extract", raw.tell(), total, name=archive.name))

            tar.extractall(staging, members=checked(), filter="data")
        record = {"archive": archive.name, "sha256": sha256, **counts}
        (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        staging.rename(target)
    except tarfile.FilterError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        member = getattr(exc, "tarinfo", None)
        where = f"{archive.name} member {member.name!r}" if member is not None else str(archive)
        raise DownloadError(f"refused by the tar data filter: {exc}", where) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"cannot extract: {exc}", archive) from None
    except BaseException:  # DownloadError from check_member, KeyboardInterrupt: leave nothing half-done
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExtractResult(archive, target, sha256, counts["members"], counts["files"], counts["bytes"])
