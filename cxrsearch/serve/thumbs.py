"""Radiographs as PNGs for people: decoded by :func:`cxrsearch.image.decode.decode_image` (the same
decoder, windowing and hostile-input guards as indexing and ``data inspect``), scaled with Pillow,
and cached by the file's fingerprint.

The fingerprint is the sha256 of the file's bytes plus the rendered size, so a file replaced under
the same name is rendered again and two copies of one film share a cache entry. The digest is
remembered per ``(path, size, mtime)`` so a warm request does not read the file again. The PNG
carries pixels only: no DICOM header, no EXIF, no text chunk.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from cxrsearch.errors import ImageError

THUMB_SIDE = 320
"""Longest side of a card's thumbnail, in pixels."""
FULL_SIDE = 0
"""``side`` value meaning the film at its original size."""


def to_png(pixels: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """Grey ``[0, 1]`` pixels ``(H, W)`` -> PNG bytes, the longest side scaled down to ``side``
    (``0``: original size; never scaled up)."""
    from PIL import Image

    grey = np.round(np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    image = Image.fromarray(grey, mode="L")
    if side and max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6 if side else 3)
    return out.getvalue()


def render_file(path: Path, side: int = THUMB_SIDE) -> bytes:
    """The radiograph at ``path`` as PNG bytes (see :func:`to_png`); ImageError when it cannot be decoded."""
    from cxrsearch.image.decode import decode_image

    return to_png(decode_image(path).pixels, side)


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ImageError(f"cannot be read ({exc.strerror or exc})", path) from None
    return digest.hexdigest()


class RenderCache:
    """Rendered PNGs by fingerprint: ``memory`` entries in memory (least recently used dropped),
    every entry also on disk under ``folder`` (``None``: memory only)."""

    def __init__(self, folder: Path | None = None, memory: int = 256) -> None:
        self.folder = folder
        self.memory = memory
        self._png: OrderedDict[str, bytes] = OrderedDict()
        self._digests: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def fingerprint(self, path: Path, side: int) -> str:
        try:
            stat = path.stat()
        except OSError as exc:
            raise ImageError(f"cannot be read ({exc.strerror or exc})", path) from None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = self._digests.get(key)
        if digest is None:
            digest = file_digest(path)
            self._digests[key] = digest
        return f"{digest}-{side}"

    def png(self, path: Path, side: int = THUMB_SIDE) -> bytes:
        """The PNG of ``path`` at ``side`` (rendered once per fingerprint)."""
        key = self.fingerprint(path, side)
        with self._lock:
            hit = self._png.get(key)
            if hit is not None:
                self._png.move_to_end(key)
                return hit
        disk = None if self.folder is None else self.folder / f"{key}.png"
        data = None
        if disk is not None and disk.is_file():
            data = disk.read_bytes()
        if data is None:
            data = render_file(path, side)
            if disk is not None:
                tmp = disk.with_name(f"{disk.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, disk)
        with self._lock:
            self._png[key] = data
            while len(self._png) > self.memory:
                self._png.popitem(last=False)
        return data
