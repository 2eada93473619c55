"""A loopback stand-in for the Hugging Face Hub: the endpoints ``snapshot_download`` calls, nothing more.

:func:`serving_hub` runs it on 127.0.0.1 (random port) and :func:`use_hub` points ``huggingface_hub``
at it (``HF_ENDPOINT``) with its cache in a temporary folder. ``hub.publish(repo, files)`` makes a
commit (40 hex digits) and moves ``main`` to it. What is served, as the Hub serves it:

- ``GET /api/models/{repo}/revision/{rev}``: ``id``, ``sha`` (the commit ``rev`` resolves to), ``siblings``;
- ``GET /api/models/{repo}/tree/{rev}``: the file listing (``oid``, ``size``, ``lfs`` for weight files);
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``: the file with ``X-Repo-Commit``, ``ETag`` (git blob
  sha1; for LFS files ``X-Linked-Etag``, their sha256, and ``X-Linked-Size``) and ``Content-Length``;
- errors carry the Hub's ``X-Error-Code``: ``RepoNotFound`` (401), ``RevisionNotFound`` and
  ``EntryNotFound`` (404). Anything else is a plain 404.

Every request is recorded in ``hub.requests`` as ``(method, path)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin")
_ROUTES = (
    ("info", re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)")),
    ("tree", re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)")),
    ("file", re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<name>.+)")),
)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    """Repositories (``repo -> commit -> {path: bytes}``), branches and the requests seen."""

    url: str = ""
    commits: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    branches: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def publish(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit ``files`` as the whole content of ``repo`` and move ``branch`` to it; returns the commit."""
        listing = "".join(f"{name}:{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items()))
        commit = hashlib.sha1(f"{repo}\n{len(self.commits.get(repo, {}))}\n{listing}".encode()).hexdigest()
        self.commits.setdefault(repo, {})[commit] = dict(files)
        self.branches.setdefault(repo, {})[branch] = commit
        return commit

    def resolve(self, repo: str, rev: str) -> str | None:
        if rev in self.commits.get(repo, {}):
            return rev
        return self.branches.get(repo, {}).get(rev)

    def downloads(self) -> list[str]:
        """Paths of the files fetched (GET ``/resolve/``), in order."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        hub: FakeHub = self.server.hub  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        hub.requests.append((self.command, path))
        for kind, pattern in _ROUTES:  # noqa: B007  (kind is read after the loop breaks)
            match = pattern.fullmatch(path)
            if match:
                break
        else:
            return self._error(404, None, "not found")
        repo, rev = unquote(match["repo"]), unquote(match["rev"])
        if repo not in hub.commits:
            return self._error(401, "RepoNotFound", "Repository not found")
        commit = hub.resolve(repo, rev)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = hub.commits[repo][commit]
        if kind == "info":
            return self._json(
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": commit,
                    "private": False,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                },
                commit,
                body,
            )
        if kind == "tree":
            return self._json([_tree_entry(name, data) for name, data in sorted(files.items())], commit, body)
        name = unquote(match["name"])
        if name not in files:
            return self._error(404, "EntryNotFound", f"{name} does not exist on {rev}")
        data = files[name]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        if name.endswith(LFS_SUFFIXES):
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("ETag", f'"{git_blob_sha1(data)}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _json(self, value: object, commit: str, body: bool) -> None:
        payload = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _error(self, status: int, code: str | None, message: str) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _tree_entry(name: str, data: bytes) -> dict:
    entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
    if name.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


@contextmanager
def serving_hub() -> Iterator[FakeHub]:
    """A running fake Hub on 127.0.0.1; ``hub.url`` is its endpoint."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    hub = FakeHub(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.hub = hub  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()


def use_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path, offline: bool = False) -> None:
    """Point ``huggingface_hub`` at ``endpoint`` with its cache under ``hf_home``, online unless ``offline``.

    The environment variables are what a user sets; ``huggingface_hub.constants`` is patched as well
    because the library reads them once, at import.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    flag = "1" if offline else "0"
    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_OFFLINE": flag,
        "TRANSFORMERS_OFFLINE": flag,
        "NO_PROXY": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)  # no registry fetch
