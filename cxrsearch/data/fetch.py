"""Resumable, verified HTTP download of one file (stdlib only; the library never prints).

``fetch(url, path)`` writes into ``<path>.part`` and resumes it with an HTTP ``Range`` request (plus
``If-Range`` with the server's ETag/Last-Modified, kept in ``<path>.part.json``, so a file that changed
on the server is fetched again from the start instead of being spliced). The byte count is checked
against ``Content-Length`` / ``Content-Range`` and the caller's expected size; the sha256 is checked
against the caller's expected value when one is known. Only then is ``.part`` renamed to ``path`` and
the computed sha256 written to ``<path>.sha256`` (``sha256sum -c`` format). A file that is already
complete and verified is not fetched again. Network failures raise a one-line
:class:`~cxrsearch.errors.DownloadError` naming the URL; an interrupted transfer leaves a resumable
``.part``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from cxrsearch.errors import ConfigError, DownloadError
from cxrsearch.progress import ProgressCallback, ProgressEvent

CHUNK = 1 << 20
USER_AGENT = "cxrsearch-download/1"


@dataclass(frozen=True)
class FetchResult:
    """``fetched`` is False when a complete, verified file was already there; ``resumed_from`` is the
    byte offset a resumed transfer started at (0 for a fresh one)."""

    url: str
    path: Path
    size: int
    sha256: str
    fetched: bool
    resumed_from: int


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> str | None:
    """The sha256 recorded next to ``path`` by a previous download, or None."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    fields = side.read_text(encoding="utf-8").split()
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        raise DownloadError("is not a sha256 record (expected '<64 hex digits>  <file name>')", side)
    return fields[0]


def sha256_file(path: Path, progress: ProgressCallback | None = None) -> str:
    """Hex sha256 of a file, reporting ``verify`` progress."""
    return _hash_file(path, progress).hexdigest()


def _hash_file(path: Path, progress: ProgressCallback | None = None) -> hashlib._Hash:
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(ProgressEvent("verify", done, total, name=path.name))
    return digest


def fetch(
    url: str,
    path: Path,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 60.0,
) -> FetchResult:
    """Download ``url`` to ``path`` (resuming ``<path>.part``), verify it, record its sha256."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError("only http:// and https:// URLs can be downloaded", url)
    path = Path(path)
    if path.exists():
        return _verify_existing(url, path, expected_size, expected_sha256, progress, timeout)
    path.parent.mkdir(parents=True, exist_ok=True)
    part, meta = path.with_name(path.name + ".part"), path.with_name(path.name + ".part.json")
    resumed_from, digest = _transfer(url, part, meta, expected_size, progress, timeout)
    size, sha = part.stat().st_size, digest.hexdigest()
    if expected_size is not None and size != expected_size:
        _discard(part, meta)
        raise DownloadError(f"downloaded {size} bytes but {expected_size} were expected; the download was deleted", url)
    if expected_sha256 is not None and sha != expected_sha256.lower():
        _discard(part, meta)
        raise DownloadError(
            f"sha256 {sha} does not match the expected {expected_sha256}; the corrupt download was deleted", url
        )
    sidecar_path(path).write_text(f"{sha}  {path.name}\n", encoding="utf-8")
    part.replace(path)
    meta.unlink(missing_ok=True)
    return FetchResult(url, path, size, sha, fetched=True, resumed_from=resumed_from)


def _verify_existing(
    url: str,
    path: Path,
    expected_size: int | None,
    expected_sha256: str | None,
    progress: ProgressCallback | None,
    timeout: float,
) -> FetchResult:
    """A file already at ``path``: accept it only if it verifies; never overwrite it."""
    size = path.stat().st_size
    known = expected_sha256.lower() if expected_sha256 else read_sidecar(path)
    if expected_size is not None and size != expected_size:
        raise DownloadError(
            f"exists with {size} bytes but {expected_size} are expected; remove it to download again", path
        )
    if known is None:  # e.g. fetched by hand: adopt it if the server agrees on its size
        remote = _remote_size(url, timeout)
        if remote is None:
            raise DownloadError(
                "exists but cannot be verified (no .sha256 record and the server gives no size); "
                "remove it to download again",
                path,
            )
        if remote != size:
            raise DownloadError(f"exists with {size} bytes but {url} has {remote}; remove it to download again", path)
    sha = sha256_file(path, progress)
    if known is not None and sha != known:
        raise DownloadError(
            f"exists but its sha256 {sha} is not the expected {known}; remove it to download again", path
        )
    if known is None or not sidecar_path(path).is_file():
        sidecar_path(path).write_text(f"{sha}  {path.name}\n", encoding="utf-8")
    return FetchResult(url, path, size, sha, fetched=False, resumed_from=0)


def _transfer(
    url: str,
    part: Path,
    meta: Path,
    expected_size: int | None,
    progress: ProgressCallback | None,
    timeout: float,
) -> tuple[int, hashlib._Hash]:
    """Stream ``url`` into ``part`` (resuming it when possible); returns (resumed_from, sha256 so far)."""
    offset = part.stat().st_size if part.is_file() else 0
    opened = _open(url, offset, _read_meta(meta) if offset else None, timeout)
    if isinstance(opened, _Unsatisfiable):  # nothing after offset: the .part may already be complete
        if opened.total == offset:
            return offset, _hash_file(part)
        _discard(part, meta)
        return _transfer(url, part, meta, expected_size, progress, timeout)
    with opened as response:
        offset, digest, total = _resume_point(response, url, part, offset, expected_size)
        meta.write_text(json.dumps({"url": url, "validator": _validator(response.headers)}), encoding="utf-8")
        done = _stream(response, url, part, offset, digest, total, progress)
    if total is not None and done < total:
        raise DownloadError(
            f"connection closed after {done} of {total} bytes; run the same command again to resume from {part}", url
        )
    if total is not None and done > total:
        _discard(part, meta)
        raise DownloadError(f"server sent {done} bytes but announced {total}; the download was deleted", url)
    return offset, digest


@dataclass(frozen=True)
class _Unsatisfiable:
    """A resumed request answered 416 (no byte after the offset); ``total``: the size the server
    gives in ``Content-Range: bytes */<total>``, if any."""

    total: int | None


def _open(url: str, offset: int, validator: str | None, timeout: float) -> http.client.HTTPResponse | _Unsatisfiable:
    """The response to a GET of ``url`` from byte ``offset`` (``If-Range: validator`` when resuming);
    DownloadError when it fails."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _content_range_total(exc.headers.get("Content-Range", ""))
            exc.close()
            return _Unsatisfiable(total)
        raise DownloadError(f"cannot download: HTTP {exc.code} {exc.reason}", url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"cannot download: {_reason(exc)}", url) from None


def _resume_point(
    response: http.client.HTTPResponse, url: str, part: Path, offset: int, expected_size: int | None
) -> tuple[int, hashlib._Hash, int | None]:
    """Where the body starts (``offset`` for a 206 resuming at it, 0 for a 200), the sha256 of the
    bytes before it, and the file's total size when the server says (checked against ``expected_size``)."""
    if response.status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range", ""), url)
        if start != offset:
            raise DownloadError(f"server resumed at byte {start}, not at {offset} as asked", url)
        digest = _hash_file(part) if offset else hashlib.sha256()
    else:  # 200: a fresh transfer (the server ignored or refused the Range)
        offset, digest = 0, hashlib.sha256()
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if total is not None and expected_size is not None and total != expected_size:
        raise DownloadError(f"server reports {total} bytes but {expected_size} are expected", url)
    return offset, digest, total


def _stream(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    offset: int,
    digest: hashlib._Hash,
    total: int | None,
    progress: ProgressCallback | None,
) -> int:
    """Append the body to ``part`` from ``offset`` (truncating it at 0), hashing into ``digest``;
    returns the bytes ``part`` holds. An interrupted read keeps what arrived (resumable)."""
    done = offset
    with part.open("ab" if offset else "wb") as out:
        try:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(ProgressEvent("download", done, total, name=part.name.removesuffix(".part")))
        except (OSError, http.client.HTTPException) as exc:
            out.flush()
            raise DownloadError(
                f"interrupted after {done} of {total or '?'} bytes ({_reason(exc)}); "
                f"run the same command again to resume from {part}",
                url,
            ) from None
    return done


def _remote_size(url: str, timeout: float) -> int | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot check the size: HTTP {exc.code} {exc.reason}", url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"cannot check the size: {_reason(exc)}", url) from None
    return int(length) if length and length.isdigit() else None


def _parse_content_range(value: str, url: str) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", value.strip())
    if not match:
        raise DownloadError(f"partial response with an unreadable Content-Range {value!r}", url)
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _content_range_total(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def _validator(headers: Message) -> str | None:
    """A strong ETag, else Last-Modified: what ``If-Range`` may carry (RFC 9110 section 13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _read_meta(meta: Path) -> str | None:
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("validator")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _discard(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip() or type(reason).__name__
    return " ".join(text.split())
