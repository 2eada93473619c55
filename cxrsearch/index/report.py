"""What an index run tells its caller: per-file :class:`Failure` records, the JSON-lines failures
file they are written to as they happen (:class:`FailureLog`), and the final :class:`IndexReport`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cxrsearch.errors import ConfigError


@dataclass(frozen=True)
class Failure:
    """One file that could not be indexed; the run goes on without it.

    Attributes:
        kind: ``"report"`` (an XML report that cannot be parsed) or ``"image"`` (a radiograph that
            cannot be decoded or encoded).
        path: the file (``archive.tgz:member`` for a report inside an archive).
        error: what is wrong, in one line.
        study_id: the report's uid, when known.
        image_id: the Open-i image id, for an image.
    """

    kind: str
    path: str
    error: str
    study_id: str | None = None
    image_id: str | None = None


class FailureLog:
    """Appends failures to ``<directory>/<collection>-<UTC time>.jsonl`` (one JSON object a line),
    flushing each line, so a killed run still leaves what it found. The file is created only when
    the first failure arrives; :attr:`path` is ``None`` until then."""

    def __init__(self, directory: Path, collection: str) -> None:
        self.directory = Path(directory)
        self.collection = collection
        self.path: Path | None = None
        self.failures: list[Failure] = []
        self._handle: IO[str] | None = None

    def add(self, failure: Failure) -> None:
        self.failures.append(failure)
        if self._handle is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            self.path = self.directory / f"{self.collection}-{stamp}.jsonl"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the index failures file: {exc.strerror or exc}", path=self.path
                ) from None
        self._handle.write(json.dumps(asdict(failure), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass(frozen=True)
class IndexReport:
    """The outcome of :func:`cxrsearch.index.index_studies`.

    Attributes:
        collection: the collection written to; ``store``: where the store lives.
        studies: reports read (after ``--limit``); ``image_refs``: their ``parentImage`` references;
            ``images_missing``: references without a file in the images folder (0 without one).
        planned: points this source should give (image points + report points).
        image_points / report_points: how ``planned`` splits.
        skipped_existing: planned points already in the collection, not re-encoded (resume).
        indexed: points encoded and written by this run.
        inverted: radiographs of this run stored as negatives and inverted before encoding
            (:mod:`cxrsearch.image.polarity`; their points carry ``"inverted": true``).
        empty: reports with neither text nor an image file (nothing to embed, not written).
        failed: files that could not be indexed (see ``failures`` and ``failures_path``).
        count: points in the collection after the run (``planned - failed image points`` when the
            collection holds only this source).
        stale: report points left from an earlier run for studies that now have image points.
        seconds: wall time of the run; ``model`` / ``checkpoint`` / ``fingerprint``: what encoded.
    """

    collection: str
    store: str
    studies: int
    image_refs: int
    images_missing: int
    planned: int
    image_points: int
    report_points: int
    skipped_existing: int
    indexed: int
    inverted: int
    empty: int
    failed: int
    count: int
    stale: int
    seconds: float
    model: str
    checkpoint: str
    fingerprint: str
    failures: tuple[Failure, ...]
    failures_path: Path | None

    @property
    def ok(self) -> bool:
        """No file failed (the CLI exits 1 otherwise)."""
        return self.failed == 0
