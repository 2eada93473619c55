"""Which radiograph files the server may read: :func:`resolve_image`, and nothing else.

A payload's ``image_path`` is either absolute (collections of cxrsearch <= 0.1) or relative to the
images folder the collection was indexed from. The server reads a file only when its path, with
``..`` collapsed, lies under one of the allowed roots (the ``--images`` folders and the images root
the collection records); a relative path is joined to the first root and may not climb out of it.
Symbolic links inside a root are followed: the root's owner made them. What is served is never the
file itself but a PNG re-rendered from its decoded pixels (:mod:`cxrsearch.serve.thumbs`), so no
DICOM header, EXIF block or other metadata ever leaves the machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrsearch.errors import QueryError


def _normal(path: Path) -> Path:
    """``path`` made absolute with ``.`` and ``..`` collapsed lexically (symbolic links untouched)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_image(payload: Mapping[str, Any], roots: Sequence[Path]) -> Path | None:
    """The radiograph file of a point's payload, ``None`` for a report point (or no path stored).

    ``roots``: the folders files may be read from, the first one being the folder relative paths
    are joined to. Raises :class:`QueryError` (one line, naming no path outside the roots) when the
    path lies outside every root, climbs out of it, or is not a regular file.
    """
    raw = payload.get("image_path")
    if payload.get("kind") == "report" or not raw:
        return None
    if not isinstance(raw, str) or "\x00" in raw:
        raise QueryError("the stored image path is not a file name")
    allowed = [_normal(Path(root)) for root in roots]
    if not allowed:
        raise QueryError("no images folder is configured: start the server with --images DIR")
    given = Path(raw)
    if given.is_absolute():
        path = _normal(given)
    else:
        if os.pardir in given.parts:
            raise QueryError("the stored image path climbs out of the images folder; refused")
        path = _normal(allowed[0] / given)
    if not any(_under(path, root) for root in allowed):
        raise QueryError("the radiograph lies outside the configured images folders (--images); not served")
    if not path.is_file():
        raise QueryError("the radiograph is no longer in the images folder (moved since indexing?)")
    return path


def collection_image_roots(store: Any, collection: str, images: Sequence[Path] = ()) -> list[Path]:
    """The allowed roots for ``collection``: the ``images`` folders given (``--images``) first, then
    the images folder the collection records (an embedded store records it beside the collection)."""
    roots = [Path(p).expanduser() for p in images]
    get_roots = getattr(store, "roots", None)
    recorded = get_roots(collection).get("images") if get_roots is not None else None
    if recorded:
        roots.append(Path(recorded))
    return roots
