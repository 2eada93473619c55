"""A collection's integrity record, and ``cxrsearch collections verify``.

A store that lost segment files or its id tracker still opens and answers from what is left: the
engine cannot know what it lost. So a writer that closes cleanly records what it left behind
(:class:`IntegrityRecord`: the point count, the count of each named vector, a digest of the point
ids), and every later open compares the engine's counts with it (:func:`check_counts`): a mismatch
is a one-line :class:`~cxrsearch.errors.StoreError` naming the collection and the remedy, never a
search over a fraction of the cases.

The record is removed before the first write of a session and written again at its clean close, so
a writer killed half-way leaves no record (nothing to compare; the next clean close writes one) and
never a stale one. Where it lives is the backend's business (embedded: ``integrity.json`` beside
``collection.json``; server: the collection's metadata).

:func:`verify_collection` checks more than the counts: the id digest and, with ``deep``, every point:
vectors finite, of the right size and unit length (the engine normalises cosine vectors, so random
bytes over a vector file show up as a wrong norm; the model writes them normalised anyway), label
probabilities in [0, 1], sparse vectors
well formed, ids equal to their deterministic keys, payload fields of the right types.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cxrsearch.defaults import VIEWS
from cxrsearch.errors import StoreError
from cxrsearch.store.base import IntegrityRecord, SparseVector, Store, point_id

REMEDY = (
    "restore the collection from a backup, or rebuild it (`cxrsearch collections drop` it, then "
    "`cxrsearch index` again)"
)
NORM_TOLERANCE = 1e-3
"""How far from 1 the norm of a stored cosine vector may be (the engine stores them normalised)."""
MAX_LISTED = 5


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 (hex) of the sorted point ids, one per line: equal digests, equal id sets."""
    digest = hashlib.sha256()
    for pid in sorted(ids):
        digest.update(pid.encode("utf-8") + b"\n")
    return digest.hexdigest()


def make_record(points: int, vectors: Mapping[str, int], ids: Iterable[str]) -> IntegrityRecord:
    return IntegrityRecord(
        points=int(points),
        vectors={k: int(v) for k, v in sorted(vectors.items())},
        ids_digest=ids_digest(ids),
        written=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def count_problems(record: IntegrityRecord, points: int, vectors: Mapping[str, int]) -> list[str]:
    """How the engine's counts differ from ``record`` (empty when they agree)."""
    problems = []
    if points != record.points:
        problems.append(f"{points:,} points where {record.points:,} were stored")
    for name, expected in record.vectors.items():
        have = vectors.get(name)
        if have is not None and have != expected:
            problems.append(f"{have:,} '{name}' vectors where {expected:,} were stored")
    return problems


def check_counts(
    collection: str, where: str, record: IntegrityRecord | None, points: int, vectors: Mapping[str, int]
) -> None:
    """StoreError when the counts of an opened collection differ from its integrity record."""
    if record is None:
        return
    problems = count_problems(record, points, vectors)
    if problems:
        raise StoreError(
            f"collection {collection!r} is damaged: the engine loads {'; '.join(problems)} at the last "
            f"clean close ({record.written}); `cxrsearch collections verify {collection}` lists what is "
            f"wrong; {REMEDY}",
            path=where,
        )


@dataclass
class VerifyReport:
    """What :func:`verify_collection` found. ``problems`` empty: the collection is sound."""

    collection: str
    location: str
    points: int
    vectors: dict[str, int]
    record: IntegrityRecord | None
    deep: bool
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Tally:
    """Counts of one kind of problem, with the first few point ids as examples."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, problem: str, pid: str) -> None:
        self.counts[problem] = self.counts.get(problem, 0) + 1
        if len(self.examples.setdefault(problem, [])) < MAX_LISTED:
            self.examples[problem].append(pid)

    def lines(self) -> list[str]:
        return [
            f"{n:,} point(s): {problem} (e.g. {', '.join(self.examples[problem])})"
            for problem, n in self.counts.items()
        ]


def _check_vectors(
    point_vectors: Mapping[str, Any],
    sizes: Mapping[str, int],
    cosine: set[str],
    probabilities: set[str],
    sparse: set[str],
    pid: str,
    tally: _Tally,
) -> None:
    import numpy as np

    for name, vector in point_vectors.items():
        if name in sparse:
            if not isinstance(vector, SparseVector):
                tally.add(f"'{name}' is not a sparse vector", pid)
            elif len(set(vector.indices)) != len(vector.indices) or not all(
                math.isfinite(v) and v >= 0 for v in vector.values
            ):
                tally.add(f"'{name}' has repeated indices or weights that are not finite and >= 0", pid)
            continue
        array = np.asarray(vector, dtype=np.float64)
        if name in sizes and array.shape != (sizes[name],):
            tally.add(f"'{name}' has {array.size} dimensions, not {sizes[name]}", pid)
        elif not np.all(np.isfinite(array)):
            tally.add(f"'{name}' holds NaN or infinite values", pid)
        elif name in cosine and abs(float(np.linalg.norm(array)) - 1.0) > NORM_TOLERANCE:
            tally.add(f"'{name}' is not of unit length (a damaged vector file?)", pid)
        elif name in probabilities and (array.min() < -NORM_TOLERANCE or array.max() > 1 + NORM_TOLERANCE):
            tally.add(f"'{name}' holds values outside [0, 1]", pid)


def _check_payload(collection: str, pid: str, payload: Mapping[str, Any], tally: _Tally) -> None:
    study = payload.get("study_id")
    image = payload.get("image_id")
    if not isinstance(study, str) or not study:
        tally.add("payload study_id is not a non-empty string", pid)
        return
    if image is not None and not isinstance(image, str):
        tally.add("payload image_id is neither null nor a string", pid)
        return
    if pid != point_id(collection, image or study):
        tally.add("id is not the deterministic key of its image_id/study_id", pid)
    for key in ("labels", "labels_true"):
        value = payload.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            tally.add(f"payload {key} is not a list of strings", pid)
    probs = payload.get("probs", {})
    if not isinstance(probs, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in probs.values()
    ):
        tally.add("payload probs is not a mapping of label -> probability in [0, 1]", pid)
    if payload.get("split") not in (None, "train", "val", "test"):
        tally.add("payload split is not train, val or test", pid)
    if payload.get("view") not in (None, *VIEWS):
        tally.add(f"payload view is not one of {', '.join(VIEWS)}", pid)


def verify_collection(store: Store, collection: str, deep: bool = False) -> VerifyReport:
    """Check ``collection`` against its integrity record, and with ``deep`` every point (see the module).

    Opening a collection whose counts disagree with its record raises; here that is caught and
    reported, and the points are read anyway so the report can say what is left.
    """
    record = store.integrity_record(collection)
    info = store.collection_info(collection, check=False)
    vectors = store.vector_counts(collection)
    report = VerifyReport(
        collection=collection,
        location=info.location,
        points=info.points_count,
        vectors=vectors,
        record=record,
        deep=deep,
    )
    report.checked.append("point and vector counts against the integrity record")
    if record is None:
        report.problems.append(
            "no integrity record: the last write did not close cleanly (or the collection "
            "predates records); a clean `cxrsearch index` run into it writes one"
        )
    else:
        report.problems.extend(count_problems(record, info.points_count, vectors))
    schema = info.schema
    sparse = set(schema.sparse_names)
    probabilities = {name for name in schema.vectors if (schema.vector_size_of or {}).get(name) == "labels"}
    # the model L2-normalises its embeddings (and engines store cosine vectors normalised): unit length
    cosine = {name for name, distance in schema.vectors.items() if distance == "cosine"} - probabilities
    tally = _Tally()
    ids: list[str] = []
    for point in store.scroll(collection, with_vectors=deep, batch=512):
        ids.append(point.id)
        if deep:
            _check_vectors(point.vectors, info.vector_sizes, cosine, probabilities, sparse, point.id, tally)
            _check_payload(collection, point.id, point.payload, tally)
    if len(ids) != info.points_count:
        report.problems.append(f"scrolling gives {len(ids):,} points where the engine counts {info.points_count:,}")
    report.checked.append("digest of the point ids against the integrity record")
    if record is not None and ids_digest(ids) != record.ids_digest:
        report.problems.append("the set of point ids differs from the one stored at the last clean close")
    if deep:
        report.checked.append(
            "every vector (size, finite, unit length, probabilities in [0, 1], sparse form), "
            "every id against its deterministic key, payload field types"
        )
    report.problems.extend(tally.lines())
    return report
