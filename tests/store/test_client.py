"""Server-path failures a user meets first: nothing listening, a wrong API key, an old server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cxrsearch.errors import StoreError
from cxrsearch.store import open_store
from cxrsearch.store.client import ClientStore


def test_unreachable_server_names_the_url():
    with pytest.raises(StoreError) as err:
        ClientStore.connect("http://127.0.0.1:1")
    assert "http://127.0.0.1:1" in str(err.value) and "cannot reach" in str(err.value)
    assert "\n" not in str(err.value)


def test_open_store_takes_the_url_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CXRSEARCH_QDRANT_URL", "http://127.0.0.1:1")
    with pytest.raises(StoreError, match=r"http://127\.0\.0\.1:1"):
        open_store()
    with pytest.raises(StoreError, match="pick one"):
        open_store("/tmp/somewhere", url="http://127.0.0.1:1")


@pytest.fixture
def fake_qdrant() -> Iterator[dict]:
    """A tiny HTTP server answering like Qdrant would: ``state['status']`` and ``state['version']``."""
    state = {"status": 200, "version": "1.19.1", "keys": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            state["keys"].append(self.headers.get("api-key"))
            body = (
                json.dumps({"title": "qdrant - vector search engine", "version": state["version"]})
                if state["status"] == 200
                else "Invalid api-key"
            ).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json" if state["status"] == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_rejected_api_key_says_so(fake_qdrant: dict):
    fake_qdrant["status"] = 401
    with pytest.raises(StoreError) as err:
        ClientStore.connect(fake_qdrant["url"], api_key="wrong")
    assert "rejected the API key" in str(err.value) and fake_qdrant["url"] in str(err.value)
    assert fake_qdrant["keys"] == ["wrong"]


def test_too_old_server_is_refused(fake_qdrant: dict):
    fake_qdrant["version"] = "1.12.4"
    with pytest.raises(StoreError, match=r"1\.12\.4 is too old"):
        ClientStore.connect(fake_qdrant["url"])
    fake_qdrant["version"] = "1.19.1"
    ClientStore.connect(fake_qdrant["url"]).close()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_server_that_never_answers_times_out_in_one_line(monkeypatch, how):
    """A loopback socket that accepts connections and never answers: the limit of --timeout or
    CXRSEARCH_QDRANT_TIMEOUT, then one line naming the URL (was a 31 s hang)."""
    import socket
    import threading
    import time

    from typer.testing import CliRunner

    from cxrsearch.cli.main import app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # keep it open, never read, never answer
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    args = ["collections", "list", "--qdrant-url", url]
    if how == "env":
        monkeypatch.setenv("CXRSEARCH_QDRANT_TIMEOUT", "1")
    else:
        monkeypatch.setenv("CXRSEARCH_QDRANT_TIMEOUT", "60")  # the flag wins
        args += ["--timeout", "1"]
    try:
        started = time.perf_counter()
        result = CliRunner().invoke(app, args)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in held:
            sock.close()
        listener.close()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "gave no answer within 1 s" in result.output and url in result.output
    assert elapsed < 15  # the 1 s limit per try (the client may retry once), not the old 31 s


def test_the_timeout_variable_is_checked(monkeypatch):
    from cxrsearch.errors import StoreError
    from cxrsearch.store import server_timeout

    monkeypatch.setenv("CXRSEARCH_QDRANT_TIMEOUT", "soon")
    with pytest.raises(StoreError, match="CXRSEARCH_QDRANT_TIMEOUT must be a whole number"):
        server_timeout()
    monkeypatch.delenv("CXRSEARCH_QDRANT_TIMEOUT")
    assert server_timeout() == 10
