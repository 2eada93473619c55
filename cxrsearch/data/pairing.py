"""Pairing Open-i image files with reports, and view positions from the Open-i DICOM metadata table.

Open-i names one radiograph in three ways:

=====================  ===============================  ==========================
where                  example                          form
=====================  ===============================  ==========================
report ``parentImage`` ``CXR3029_IM-1404-1001``          the image id
PNG tarball            ``CXR3029_IM-1404-1001.png``      ``<image id>.png``
DICOM tarball          ``3029_IM-1404-1001.dcm``         image id without ``CXR``
=====================  ===============================  ==========================

Two of the 7,470 ids (both of report 1) carry an extra ``_1``: the report says
``CXR1_1_IM-0001-3001`` (and so does the PNG name) while the DICOM name and the metadata table say
``CXR1_IM-0001-3001``. :class:`ImageIdMap` absorbs that: a lookup by either form finds the entry.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from cxrsearch.errors import ConfigError, ImageError, ReportError
from cxrsearch.image.view import normalise_view

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
"""File name endings indexed as images, in tie-break order: when one image id has several files
(say ``images/png`` and ``images/dicom`` both downloaded), the earlier ending wins."""

_ID = re.compile(r"(?:CXR)?(\d+)((?:_\d+)?_IM-\d+(?:-\d+)+)", re.IGNORECASE)
_QUIRK = re.compile(r"^(CXR\d+)_\d+_(IM-)")
_UID = re.compile(r"^(CXR\d+)_")


def normalize_image_id(image_id: str) -> str:
    """The id without Open-i's extra ``_<n>`` (``CXR1_1_IM-0001-3001`` -> ``CXR1_IM-0001-3001``)."""
    return _QUIRK.sub(r"\1_\2", image_id)


def uid_of_image(image_id: str) -> str:
    """The study uid an image id belongs to (``CXR3029_IM-1404-1001`` -> ``CXR3029``)."""
    match = _UID.match(image_id)
    if match is None:
        raise ReportError(f"not an Open-i image id (expected CXR<n>_IM-...): {image_id!r}")
    return match.group(1)


def image_id_from_filename(path: str | Path) -> str | None:
    """The Open-i image id a file name denotes, or ``None`` when the name is not Open-i's.

    ``CXR3029_IM-1404-1001.png`` and ``3029_IM-1404-1001.dcm`` both give ``CXR3029_IM-1404-1001``.
    """
    name = Path(path).name
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in IMAGE_SUFFIXES:
        return None
    match = _ID.fullmatch(stem)
    if match is None:
        return None
    return f"CXR{match.group(1)}{match.group(2).upper()}"


class ImageIdMap(dict):
    """A ``dict`` keyed by Open-i image id whose lookups (``[]``, ``get``, ``in``) also accept the
    other spelling of the two quirky ids of report 1 (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._aliases = {normalize_image_id(key): key for key in self}

    def __setitem__(self, key: str, value) -> None:
        super().__setitem__(key, value)
        self._aliases.setdefault(normalize_image_id(key), key)

    def _resolve(self, key: object) -> object:
        if isinstance(key, str) and not super().__contains__(key):
            return self._aliases.get(normalize_image_id(key), key)
        return key

    def __missing__(self, key: object):
        resolved = self._resolve(key)
        if resolved is key:
            raise KeyError(key)
        return super().__getitem__(resolved)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._resolve(key))

    def get(self, key: object, default=None):
        return super().get(self._resolve(key), default)


def _walk_files(root: Path) -> Iterator[Path]:
    for folder, dirnames, filenames in os.walk(root, onerror=None):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(folder) / name


def index_images(images_dir: str | Path) -> ImageIdMap:
    """Every Open-i-named radiograph under ``images_dir`` (searched recursively): image id -> path.

    Files whose names are not Open-i's are ignored (pairing is by name; the decoder later checks
    the content). When one id has several files, ``IMAGE_SUFFIXES`` order decides (PNG first).
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise ImageError("images directory not found (or not a directory)", path=root)
    rank = {suffix: i for i, suffix in enumerate(IMAGE_SUFFIXES)}
    index = ImageIdMap()
    for path in _walk_files(root):
        image_id = image_id_from_filename(path)
        if image_id is None:
            continue
        current = dict.get(index, image_id)
        if current is None or rank[path.suffix.lower()] < rank[current.suffix.lower()]:
            index[image_id] = path
    return index


def load_view_table(csv_gz: str | Path) -> ImageIdMap:
    """Image id -> ``"PA" | "AP" | "LATERAL"`` from the Open-i DICOM metadata table (``.csv`` or
    ``.csv.gz`` with ``imageid`` and ``View Position`` columns). Values are normalised by
    :func:`cxrsearch.image.view.normalise_view` (``LL``/``RL``/``LATERAL`` are lateral views, as for
    the DICOM tag); rows with an empty or unknown view are left out (the view is then unknown)."""
    return _load_column(csv_gz, "View Position", normalise_view)


def load_photometric_table(csv_gz: str | Path) -> ImageIdMap:
    """Image id -> the DICOM *Photometric Interpretation* (``"MONOCHROME1"``/``"MONOCHROME2"``) of the
    Open-i metadata table: the PNGs of MONOCHROME1 DICOMs may be stored as negatives."""
    return _load_column(csv_gz, "Photometric Interpretation", lambda raw: raw.strip().upper() or None)


def _load_column(csv_gz: str | Path, column: str, normalise: Callable[[str], str | None]) -> ImageIdMap:
    path = Path(csv_gz)
    if not path.is_file():
        raise ConfigError("metadata table not found", path=path)
    opener = gzip.open if path.name.endswith(".gz") else open
    table = ImageIdMap()
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or "imageid" not in header or column not in header:
                raise ConfigError(f"not an Open-i metadata table: needs 'imageid' and {column!r} columns", path=path)
            id_col, value_col = header.index("imageid"), header.index(column)
            for row in reader:
                if len(row) <= max(id_col, value_col):
                    raise ConfigError(
                        f"line {reader.line_num}: row has {len(row)} columns, header {len(header)}", path=path
                    )
                value = normalise(row[value_col])
                if value is not None and row[id_col].strip():
                    table[row[id_col].strip()] = value
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the metadata table: {exc}", path=path) from exc
    return table
