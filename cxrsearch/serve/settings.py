"""What ``cxrsearch serve`` was given (:class:`ServeSettings`) and the binding rule.

Safe by default: the server binds ``127.0.0.1``. Binding any other address (a LAN interface,
``0.0.0.0``) requires a token (``--token`` or ``$CXRSEARCH_SERVE_TOKEN``), and once a token is set
every request must carry it, whatever the address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cxrsearch import paths
from cxrsearch.defaults import DEFAULT_COLLECTION
from cxrsearch.errors import ConfigError

TOKEN_ENV = "CXRSEARCH_SERVE_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest accepted upload (64 MiB: above any chest radiograph, DICOM included)."""
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """The server's configuration.

    Attributes:
        host, port: where to listen.
        token: the shared secret every request must carry (``None``: no token; loopback only).
        collection: the collection searched; model: its checkpoint (``None``: the one it records).
        images: folders radiographs may be read from (besides the images root the collection records).
        max_upload_bytes: uploads above this are refused (413) before decoding.
        explain_steps: Integrated Gradients steps of "explain this match".
        cache: where rendered PNGs, uploads and explanations are kept (``None``: under the cache dir).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    collection: str = DEFAULT_COLLECTION
    model: Path | None = None
    images: tuple[Path, ...] = field(default_factory=tuple)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    explain_steps: int = 32
    cache: Path | None = None

    def __post_init__(self) -> None:
        token = None if self.token is None else self.token.strip() or None
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "images", tuple(Path(p).expanduser() for p in self.images))
        if not 0 < int(self.port) < 65536:
            raise ConfigError(f"--port must be 1-65535, got {self.port}")
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"the token is too short ({len(token)} characters; use at least {MIN_TOKEN_LENGTH}, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        if not is_loopback(self.host) and token is None:
            raise ConfigError(
                f"binding {self.host} exposes the case index beyond this machine: give --token "
                f"(or set {TOKEN_ENV}); every request must then carry it"
            )
        if self.max_upload_bytes < 1:
            raise ConfigError("the upload limit must be positive")

    @property
    def cache_dir(self) -> Path:

        return self.cache if self.cache is not None else paths.cache_dir() / "serve"
