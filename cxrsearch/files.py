"""Writing a small file so that a reader sees the old version or the new one, never part of one
(layer 0: standard library only). Used for every JSON record the package keeps beside its data:
collection metadata and integrity records, training states, verification stamps, ONNX export
records, the serve record."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it and ``os.replace``; the
    temporary file is removed when the write fails, and the error passes through."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
