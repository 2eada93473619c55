"""Open-i (Indiana University) chest X-ray reports -> :class:`Study` records.

Reports are read from the official ``NLMCXR_reports.tgz`` directly (member by member, in archive
order, never extracted to disk), from a folder of ``<n>.xml`` files, from one XML file, or from a
data folder holding either (see :func:`locate_reports`).
Every XML document goes through ``defusedxml`` with DTDs forbidden: entity expansion ("billion
laughs"), external entities (XXE) and any ``<!DOCTYPE>`` are refused with a :class:`ReportError`
naming the file. Open-i reports never need a DTD.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml.ElementTree import fromstring

from cxrsearch.data.labels import labels_from_mesh
from cxrsearch.data.splits import split_of
from cxrsearch.errors import ReportError
from cxrsearch.text.report import report_text

REPORTS_TGZ = "NLMCXR_reports.tgz"
REPORTS_FOLDER = "ecgen-radiology"
MAX_REPORT_BYTES = 2_000_000
"""Real reports are 3-25 kB; anything this large is refused rather than parsed."""

_UID = re.compile(r"CXR(\d+)")
_IMAGE_ID = re.compile(r"CXR\d+(?:_\d+)?_IM-\d+(?:-\d+)+")
_SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
_cache: dict[tuple[str, int, int], tuple[Study, ...]] = {}


@dataclass(frozen=True)
class Study:
    """One Open-i report (a study: one or more radiographs and their report).

    Sections are as written (whitespace normalised, ``XXXX`` de-identification tokens kept; see
    :mod:`cxrsearch.text.report` for the text the model reads) and ``None`` when absent or empty.
    ``mesh_major`` are the manual MeSH annotations the ``labels`` come from; ``mesh_automatic`` the
    automatically extracted ones (kept for reference, not used for labels). ``image_ids`` may be
    empty (104 real reports have no image). ``source`` names the file (``archive.tgz:member``).
    """

    uid: str
    comparison: str | None
    indication: str | None
    findings: str | None
    impression: str | None
    mesh_major: tuple[str, ...]
    mesh_automatic: tuple[str, ...]
    image_ids: tuple[str, ...]
    labels: tuple[str, ...]
    split: str
    source: str

    @property
    def number(self) -> int:
        """The report number (``CXR3029`` -> 3029), the order of :func:`load_studies`."""
        return int(self.uid[3:])

    def report_text(self) -> str:
        """The text the model reads: cleaned findings then impression (``""`` if both are missing)."""
        return report_text(self.findings, self.impression)


def _text(element: Element) -> str | None:
    text = " ".join("".join(element.itertext()).split())
    return text or None


def _parse_xml(data: bytes, name: str) -> Element:
    if not data.strip():
        raise ReportError("empty file", path=name)
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"{len(data):,} bytes is far larger than any Open-i report; refused", path=name)
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        raise ReportError(
            "refused: the XML declares a DTD (<!DOCTYPE>), which could expand entities or "
            "load external files; Open-i reports have none",
            path=name,
        ) from exc
    except EntitiesForbidden as exc:
        raise ReportError(f"refused: the XML declares the entity {exc.name!r} (entity expansion)", path=name) from exc
    except ExternalReferenceForbidden as exc:
        raise ReportError("refused: the XML references an external resource", path=name) from exc
    except DefusedXmlException as exc:
        raise ReportError(f"refused unsafe XML: {exc}", path=name) from exc
    except ParseError as exc:
        raise ReportError(f"not well-formed XML ({exc})", path=name) from exc


def parse_report(data: bytes, name: str) -> Study:
    """Parse one Open-i XML report. ``name`` is used as ``Study.source`` and in error messages."""
    root = _parse_xml(data, name)
    if root.tag != "eCitation":
        raise ReportError(f"not an Open-i report: root element is <{root.tag}>, expected <eCitation>", path=name)
    uid_element = root.find("uId")
    uid = (uid_element.get("id") or "").strip() if uid_element is not None else ""
    if not _UID.fullmatch(uid):
        raise ReportError(f"missing or malformed <uId id=...> (got {uid!r}, expected CXR<number>)", path=name)

    sections: dict[str, str | None] = {}
    for element in root.iter("AbstractText"):
        label = (element.get("Label") or "").strip().upper()
        if label in _SECTIONS and sections.get(label) is None:
            sections[label] = _text(element)

    mesh = root.find("MeSH")
    major = tuple(t for t in (_text(e) for e in mesh.iter("major")) if t) if mesh is not None else ()
    automatic = tuple(t for t in (_text(e) for e in mesh.iter("automatic")) if t) if mesh is not None else ()

    image_ids = []
    for element in root.iter("parentImage"):
        image_id = (element.get("id") or "").strip()
        if not _IMAGE_ID.fullmatch(image_id):
            raise ReportError(
                f"malformed <parentImage id={image_id!r}> (expected like CXR3029_IM-1404-1001)", path=name
            )
        image_ids.append(image_id)

    return Study(
        uid=uid,
        comparison=sections.get("COMPARISON"),
        indication=sections.get("INDICATION"),
        findings=sections.get("FINDINGS"),
        impression=sections.get("IMPRESSION"),
        mesh_major=major,
        mesh_automatic=automatic,
        image_ids=tuple(image_ids),
        labels=labels_from_mesh(major),
        split=split_of(uid),
        source=name,
    )


def _read(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes of ``path`` (all of it for -1), read only when it is a regular file
    (symlinks followed: a FIFO would block forever, ``/dev/zero`` never ends) of at most
    :data:`MAX_REPORT_BYTES` when read whole, checked on the open descriptor before any byte is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO must not wait
    except OSError as exc:
        raise ReportError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else "a device"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket"
                if stat.S_ISSOCK(info.st_mode)
                else "not a file"
            )
            raise ReportError(f"{kind}, not a regular file: refused", path=path)
        if size < 0 and info.st_size > MAX_REPORT_BYTES:
            raise ReportError(f"{info.st_size:,} bytes is far larger than any Open-i report; refused", path=path)
        try:
            data = handle.read(size if size >= 0 else MAX_REPORT_BYTES + 1)
        except OSError as exc:
            raise ReportError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if size < 0 and len(data) > MAX_REPORT_BYTES:  # grew while being read
        raise ReportError(
            f"more than {MAX_REPORT_BYTES:,} bytes, far larger than any Open-i report; refused", path=path
        )
    return data


def looks_like_xml(path: Path) -> bool:
    """Whether a file's content starts like XML (``<`` after an optional BOM and whitespace)."""
    return _read(path, 64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def locate_reports(path: str | Path) -> Path:
    """Resolve what the user pointed at to a report archive, an XML folder or one XML file.

    A folder is searched, in this order, for ``*.xml`` files, an ``ecgen-radiology/`` folder, an
    ``NLMCXR_reports.tgz``, and ``openi/NLMCXR_reports.tgz`` (the layout of the shared test data).
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise ReportError("not found", path=path)
    if any(path.glob("*.xml")):
        return path
    for candidate in (path / REPORTS_FOLDER, path / REPORTS_TGZ, path / "openi" / REPORTS_TGZ):
        if candidate.exists():
            return candidate
    raise ReportError(
        f"no Open-i reports here (looked for *.xml, {REPORTS_FOLDER}/, {REPORTS_TGZ}, openi/{REPORTS_TGZ})", path=path
    )


def _iter_archive(archive: Path) -> Iterator[tuple[str, bytes]]:
    try:
        # "r:*", not the stream mode "r|*": the stream mode silently stops at a truncated gzip.
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by `with tar:` below
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ReportError("neither an XML report nor a (gzipped) tar archive of reports", path=archive) from exc
    try:
        with tar:
            for member in tar:
                if not member.isfile() or not member.name.lower().endswith(".xml"):
                    continue
                name = f"{archive}:{member.name}"
                if member.size > MAX_REPORT_BYTES:
                    raise ReportError(f"{member.size:,} bytes is far larger than any Open-i report; refused", path=name)
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise ReportError("member has no data", path=name)
                yield name, handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ReportError(f"truncated or corrupt report archive ({type(exc).__name__}: {exc})", path=archive) from exc


def iter_report_files(source: str | Path) -> Iterator[tuple[str, bytes]]:
    """``(name, xml bytes)`` for every report in a tgz, an XML folder or one XML file."""
    path = locate_reports(source)
    if path.is_dir():
        for xml in sorted(path.glob("*.xml")):
            yield str(xml), _read(xml)
    elif path.suffix.lower() == ".xml" or looks_like_xml(path):
        yield str(path), _read(path)
    else:
        yield from _iter_archive(path)


def load_studies(source: str | Path) -> list[Study]:
    """Every report of ``source`` (tgz, XML folder, XML file or data folder), ordered by report number.

    Loading the 3,955 real reports from the tgz takes about a second; results for an archive are
    cached in-process (keyed by path, size and modification time), so repeated calls are free.
    """
    path = locate_reports(source)
    key = None
    if path.is_file():
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
        if key in _cache:
            return list(_cache[key])
    studies: dict[str, Study] = {}
    for name, data in iter_report_files(path):
        study = parse_report(data, name)
        if study.uid in studies:
            raise ReportError(f"duplicate report {study.uid} (also in {studies[study.uid].source})", path=name)
        studies[study.uid] = study
    if not studies:
        raise ReportError("no Open-i XML reports found", path=path)
    ordered = tuple(sorted(studies.values(), key=lambda s: s.number))
    if key is not None:
        if len(_cache) >= 4:
            _cache.clear()
        _cache[key] = ordered
    return list(ordered)
