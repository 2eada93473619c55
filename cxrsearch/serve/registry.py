"""Where a running ``cxrsearch serve`` listens, so that the terminal beside it keeps working.

The embedded store admits one process per collection. While ``cxrsearch serve`` holds a collection
it writes ``<store>/<collection>/.serve.json`` beside the collection's lock (its pid, URL, whether a
token protects it) and removes it on exit. Read-only commands of another process find it
(:func:`running_server`) and ask that server's JSON API instead of failing on the lock; writing
commands still refuse, and the lock's message names the server (:func:`describe_holder`).

A record is trusted only when its process is alive and it listens on loopback: a server bound to
another address is never used implicitly, and a stale record (a server killed with ``kill -9``) is
ignored. If the server needs a token, the CLI reads it from ``$CXRSEARCH_SERVE_TOKEN``, the
variable ``cxrsearch serve --token`` also reads.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import QueryError, StoreError
from cxrsearch.files import write_atomic
from cxrsearch.store.edge import SERVER_RECORD, read_server_record

if TYPE_CHECKING:
    import urllib.request

RECORD_FILE = SERVER_RECORD
TOKEN_ENV = "CXRSEARCH_SERVE_TOKEN"
NOTICES_HEADER = "X-Cxrsearch-Notices"
"""Response header of ``/api/search``: the search's notices (what ``cxrsearch search`` prints to stderr,
e.g. that the collection was made by an older cxrsearch) as a JSON list, ASCII-escaped. The body stays
exactly what ``search --json`` prints."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerRecord:
    """A running server: its ``pid``, base ``url`` (``http://127.0.0.1:8765``), the ``host`` it
    bound, the ``collection`` it serves and whether a ``token`` protects it."""

    pid: int
    url: str
    host: str
    collection: str
    token: bool


def record_path(store_root: Path, collection: str) -> Path:
    return Path(store_root) / collection / RECORD_FILE


def announce(store_root: Path, collection: str, host: str, port: int, token: bool) -> Path:
    """Write the record of this process serving ``collection`` (atomically); returns its path."""
    shown = f"[{host}]" if ":" in host else host
    record = ServerRecord(pid=os.getpid(), url=f"http://{shown}:{port}", host=host, collection=collection, token=token)
    path = record_path(store_root, collection)
    write_atomic(path, json.dumps(asdict(record)) + "\n")
    return path


def withdraw(path: Path) -> None:
    """Remove this process's record (only if it is still ours)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read_record(store_root: Path, collection: str) -> ServerRecord | None:
    """The record of a live server holding ``collection``, whatever it binds (``None``: none, or stale)."""
    raw = read_server_record(Path(store_root) / collection)
    try:
        record = ServerRecord(
            pid=int(raw["pid"]),
            url=str(raw["url"]),
            host=str(raw["host"]),
            collection=str(raw["collection"]),
            token=bool(raw["token"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return record if record.pid != os.getpid() and _alive(record.pid) else None


def running_server(store_root: Path, collection: str) -> ServerRecord | None:
    """A live server on loopback serving ``collection`` of the store at ``store_root``, else ``None``."""
    record = read_record(store_root, collection)
    return record if record is not None and record.host in LOOPBACK else None


def describe_holder(store_root: Path, collection: str) -> str | None:
    """``"cxrsearch serve (pid N) at URL"`` when a live server holds ``collection``, else ``None``."""
    record = read_record(store_root, collection)
    return None if record is None else f"`cxrsearch serve` (pid {record.pid}) at {record.url}"


def api_get(
    record: ServerRecord, path: str, params: Sequence[tuple[str, str]], timeout: float = 60.0, method: str = "GET"
) -> Any:
    """``GET`` (or ``POST``, the parameters in the query string) the server's JSON API;
    StoreError/QueryError in one line naming the server."""
    query = f"{path}?{urllib.parse.urlencode(list(params))}"
    return _send(record, query, b"" if method == "POST" else None, None, timeout)[0]


def api_search(
    record: ServerRecord, params: Sequence[tuple[str, str]], image: Path | None = None, timeout: float = 120.0
) -> tuple[Any, list[str]]:
    """``/api/search`` (``GET``; ``POST`` with ``image`` as the page's upload): its JSON, exactly what
    ``search --json`` prints, and the notices the server sent beside it (:data:`NOTICES_HEADER`)."""
    query = f"/api/search?{urllib.parse.urlencode(list(params))}"
    body, content_type = (None, None) if image is None else _multipart("image", image)
    answer, headers = _send(record, query, body, content_type, timeout)
    return answer, read_notices(headers.get(NOTICES_HEADER))


def notices_header(notices: Sequence[str]) -> dict[str, str]:
    """The response headers that carry ``notices`` (none when there are none)."""
    return {NOTICES_HEADER: json.dumps(list(notices))} if notices else {}


def read_notices(value: str | None) -> list[str]:
    """The notices of a :data:`NOTICES_HEADER` value (a server that sent none: ``[]``; one that is not
    a JSON list of strings is shown as it came, rather than dropped)."""
    if not value:
        return []
    try:
        notices = json.loads(value)
    except ValueError:
        return [value]
    if isinstance(notices, list) and all(isinstance(n, str) for n in notices):
        return notices
    return [value]


def _authorize(request: urllib.request.Request, record: ServerRecord) -> None:
    """Add the bearer token from :data:`TOKEN_ENV` when the server needs one (StoreError if unset)."""
    if not record.token:
        return
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise StoreError(
            f"the collection is served by `cxrsearch serve` (pid {record.pid}) with a token: set "
            f"{TOKEN_ENV} to use it from the terminal",
            path=record.url,
        )
    request.add_header("Authorization", f"Bearer {token}")


def _send(
    record: ServerRecord, query: str, body: bytes | None, content_type: str | None, timeout: float
) -> tuple[Any, Any]:
    """The server's JSON answer to ``query`` and the response headers (an ``email.message.Message``)."""
    import urllib.error  # with urllib.request (ssl, http, email: 20 ms), only when a server answers
    import urllib.request

    request = urllib.request.Request(
        f"{record.url}{query}",
        headers={"Accept": "application/json"},
        data=body,
        method="GET" if body is None else "POST",
    )
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    _authorize(request, record)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return json.loads(response.read().decode("utf-8")), response.headers
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read().decode("utf-8")).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise QueryError(str(message), path=record.url) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StoreError(
            f"the `cxrsearch serve` (pid {record.pid}) holding this collection did not answer "
            f"({getattr(exc, 'reason', exc)})",
            path=record.url,
        ) from None


def _multipart(field: str, file: Path) -> tuple[bytes, str]:
    """A multipart form body holding ``file`` as the field ``field``, and its content type."""
    import uuid

    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{Path(file).name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    try:
        body = head + Path(file).read_bytes() + f"\r\n--{boundary}--\r\n".encode("ascii")
    except OSError as exc:
        raise QueryError(f"cannot read the query image: {exc.strerror or exc}", path=file) from None
    return body, f"multipart/form-data; boundary={boundary}"


def fetch_file(record: ServerRecord, path: str, target: Path, timeout: float = 60.0) -> Path:
    """Download ``path`` (e.g. an explanation PNG the API names) from the server into ``target``."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{record.url}{path}")
    _authorize(request, record)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            target.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(
            f"cannot fetch {path} from `cxrsearch serve` (pid {record.pid}): {exc}", path=record.url
        ) from None
    return target
