"""Every user path, in one place.

Each path defaults under platformdirs' per-user directories and is overridable by an environment
variable (and, in the CLI, by a flag that takes precedence over the variable).

=============  ======================  ==============================================
what           environment variable    default
=============  ======================  ==============================================
Open-i data    ``CXRSEARCH_DATA``      ``<user data dir>/openi``
cache          ``CXRSEARCH_CACHE``     ``<user cache dir>``
store          ``CXRSEARCH_STORE``     ``<user data dir>/store``
models         ``CXRSEARCH_MODELS``    ``<user data dir>/models``
outputs        ``CXRSEARCH_OUTPUT``    ``<user data dir>/outputs`` (explain PNGs, reports)
=============  ======================  ==============================================
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

APP_NAME = "cxrsearch"


def _user_data_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _resolve(override: str | Path | None, env: str, default: Path) -> Path:
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    value = os.environ.get(env, "")
    if value:
        return Path(value).expanduser()
    return default


def data_dir(override: str | Path | None = None) -> Path:
    """Where Open-i reports (and images) live or are downloaded to."""
    return _resolve(override, "CXRSEARCH_DATA", _user_data_root() / "openi")


def cache_dir(override: str | Path | None = None) -> Path:
    """Cache for derived, re-computable files (e.g. frozen-tower feature caches)."""
    import platformdirs

    return _resolve(override, "CXRSEARCH_CACHE", Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)))


def cache_for(path: str | Path, kind: str) -> Path:
    """``<cache dir>/<kind>/<key>``: where a file derived from ``path`` goes when ``path``'s own
    folder is read-only (a verification stamp, an ONNX export); ``key`` names its absolute path."""
    key = hashlib.sha256(str(Path(path).resolve()).encode("utf-8")).hexdigest()[:32]
    return cache_dir() / kind / key


def store_dir(override: str | Path | None = None) -> Path:
    """The embedded Qdrant store: one shard directory per collection."""
    return _resolve(override, "CXRSEARCH_STORE", _user_data_root() / "store")


def models_dir(override: str | Path | None = None) -> Path:
    """Trained checkpoints (``<name>/model.safetensors`` + ``config.json``)."""
    return _resolve(override, "CXRSEARCH_MODELS", _user_data_root() / "models")


def output_dir(override: str | Path | None = None) -> Path:
    """Explain overlays, evaluation reports and other outputs meant for people."""
    return _resolve(override, "CXRSEARCH_OUTPUT", _user_data_root() / "outputs")
