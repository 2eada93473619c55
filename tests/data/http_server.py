"""The local HTTP server and tarballs of the download tests: nothing touches the internet.

The server (127.0.0.1, random port) serves files by base name, honours ``Range: bytes=N-`` with
``If-Range``, and can drop a connection mid-transfer once (``state.cut_after``).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before the connection is dropped (once)


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves ``state.files`` by base name; honours ``Range: bytes=N-`` and ``If-Range: <etag>``."""

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _serve(self, body: bool) -> None:
        state: _State = self.server.state  # type: ignore[attr-defined]
        state.requests.append((self.command, self.path, dict(self.headers)))
        name = self.path.rsplit("/", 1)[-1]
        data = state.files.get(name)
        if data is None:
            self.send_error(404)
            return
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start, status = 0, 200
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if wanted and self.headers.get("If-Range", etag) == etag:
            start, status = int(wanted.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        payload = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("ETag", etag)
        self.end_headers()
        if body:
            cut = state.cut_after.pop(name, None)
            self.wfile.write(payload if cut is None else payload[:cut])
            self.close_connection = True


@contextmanager
def serving() -> Iterator[ThreadingHTTPServer]:
    """A running server; ``.state`` holds its files and the requests, ``.url`` its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/collections/"  # type: ignore[attr-defined]
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_tgz(entries: list[tuple[str, bytes | None, dict]]) -> bytes:
    """(name, content or None, TarInfo attributes) -> gzip'd tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content, attrs in entries:
            info = tarfile.TarInfo(name)
            for key, value in attrs.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, None if content is None else io.BytesIO(content))
    return buf.getvalue()


PNG_TGZ_ENTRIES = [
    ("CXR1_1_IM-0001-3001.png", b"\x89PNG fake 1" * 50, {}),
    ("CXR2_IM-0652-1001.png", b"\x89PNG fake 2" * 5000, {}),
    ("sub", None, {"type": tarfile.DIRTYPE, "mode": 0o755}),
    ("sub/CXR3_IM-1384-1001.png", b"\x89PNG fake 3" * 70, {}),
    ("sub/link.png", None, {"type": tarfile.SYMTYPE, "linkname": "CXR3_IM-1384-1001.png"}),
]
