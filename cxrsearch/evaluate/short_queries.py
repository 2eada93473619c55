"""The short-query evaluation set: versioned free-text queries of a few words, per label.

The set (``SHORT_QUERY_SET``, the packaged file ``queries/short-v1.json`` next to this module) holds,
for every label of the vocabulary (``cxrsearch/data/labels.json``, ``normal`` included), at least
eight short phrasings (2-6 words) the way an educator or radiologist types a search: synonyms, lay
and radiology wording, laterality and size modifiers ("enlarged heart", "blunted costophrenic
angle", "hyperinflated chest"). They were **written from the label definitions** (the descriptions
and MeSH rules of labels.json, MeSH scope notes, common radiology usage), never copied from Open-i
reports: no query text equals a whole sentence of any Open-i findings or impression, which
``tests/evaluate/test_short_queries.py`` checks on the real reports. No phrasing is negated.

- **Split**: per label, the 2nd, 5th and 8th phrasing (ids ``<label>-02``, ``-05``, ``-08``) are
  ``dev``, the rest (at least five) ``test``. ``dev`` is for tuning only (prompt wording, fusion
  weights, thresholds); only ``test`` numbers are reported.
- **Relevance**: a hit is relevant to a query when the hit's MeSH-derived labels (``labels_true``)
  hold the query's label. Queries run without filters.

Changing a query means a new version (``short-v2.json``): results of different versions do not compare.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrsearch.errors import ConfigError

SHORT_QUERY_SET = "short-v1"
SPLITS = ("dev", "test")
DEFAULT_PATH = Path(__file__).resolve().parent / "queries" / f"{SHORT_QUERY_SET}.json"

_TOP_KEYS = frozenset({"version", "description", "provenance", "queries"})
_QUERY_KEYS = frozenset({"id", "label", "text", "split"})


@dataclass(frozen=True)
class ShortQuery:
    """One short query: ``text`` searched for, relevant hits carry ``label`` in ``labels_true``."""

    id: str
    label: str
    text: str
    split: str


def _parse(raw: object, where: Path, vocabulary: Sequence[str] | None) -> list[ShortQuery]:
    """The queries of a parsed query-set file, validated (ConfigError naming ``where`` on any problem)."""
    entries = _check_top(raw, where)
    known = None if vocabulary is None else set(vocabulary)
    queries: list[ShortQuery] = []
    ids: set[str] = set()
    texts: dict[str, str] = {}  # casefolded text -> query id
    for number, entry in enumerate(entries, 1):
        query = _query(entry, number, where)
        if not query.id:
            raise ConfigError(f"query #{number}: empty id", path=where)
        if query.id in ids:
            raise ConfigError(f"duplicate query id {query.id!r}", path=where)
        ids.add(query.id)
        if not query.text:
            raise ConfigError(f"query {query.id!r}: empty text", path=where)
        key = query.text.casefold()
        if key in texts:
            raise ConfigError(f"query {query.id!r}: text {query.text!r} duplicates query {texts[key]!r}", path=where)
        texts[key] = query.id
        _check_split_and_label(query, known, where)
        queries.append(query)
    return queries


def _check_top(raw: object, where: Path) -> list[object]:
    """The file's ``queries`` list, after checking the top-level object's keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError("expected a JSON object with a 'queries' list", path=where)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown keys {unknown}", path=where)
    if not isinstance(raw.get("version"), str) or not raw["version"].strip():
        raise ConfigError("'version' must be a non-empty string", path=where)
    for key in ("description", "provenance"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{key!r} must be a string", path=where)
    entries = raw.get("queries")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("'queries' must be a non-empty list", path=where)
    return entries


def _query(entry: object, number: int, where: Path) -> ShortQuery:
    """Query #``number`` with exactly the query keys, all strings (whitespace normalised)."""
    if not isinstance(entry, dict):
        raise ConfigError(f"query #{number} is not an object: {entry!r}", path=where)
    unknown = sorted(set(entry) - _QUERY_KEYS)
    missing = sorted(_QUERY_KEYS - set(entry))
    if unknown or missing:
        problems = [f"unknown keys {unknown}"] if unknown else []
        problems += [f"missing keys {missing}"] if missing else []
        raise ConfigError(f"query #{number}: {', '.join(problems)}", path=where)
    bad = sorted(key for key in _QUERY_KEYS if not isinstance(entry[key], str))
    if bad:
        raise ConfigError(f"query #{number}: {bad} must be strings", path=where)
    return ShortQuery(
        id=entry["id"].strip(),
        label=entry["label"].strip(),
        text=" ".join(entry["text"].split()),
        split=entry["split"].strip(),
    )


def _check_split_and_label(query: ShortQuery, known: set[str] | None, where: Path) -> None:
    """ConfigError when the query's split is not dev/test or its label is empty or outside ``known``."""
    if query.split not in SPLITS:
        raise ConfigError(f"query {query.id!r}: split {query.split!r} is not one of {list(SPLITS)}", path=where)
    if not query.label:
        raise ConfigError(f"query {query.id!r}: empty label", path=where)
    if known is not None and query.label not in known:
        raise ConfigError(f"query {query.id!r}: label {query.label!r} is not in the vocabulary", path=where)


def load_short_queries(
    split: str | None = None,
    vocabulary: Sequence[str] | None = None,
    path: Path | None = None,
) -> list[ShortQuery]:
    """The short queries of ``split`` (``"dev"``, ``"test"``; all when ``None``), in file order.

    ``path`` defaults to the packaged ``queries/short-v1.json``. The file is validated strictly
    (unknown or missing keys, duplicate ids or texts, a split other than dev/test, empty text, and,
    when ``vocabulary`` is given, a label outside it) and any problem raises :class:`ConfigError`
    naming the file.
    """
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown short-query split {split!r} (choose from {list(SPLITS)})")
    where = DEFAULT_PATH if path is None else Path(path)
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the short-query set: {exc}", path=where) from exc
    queries = _parse(raw, where, vocabulary)
    return queries if split is None else [query for query in queries if query.split == split]
