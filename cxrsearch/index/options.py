"""What to index and how: :class:`IndexOptions` (what ``cxrsearch index`` parses its flags into)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrsearch import paths
from cxrsearch.defaults import DEFAULT_COLLECTION, DEFAULT_SCHEMA
from cxrsearch.errors import ConfigError

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class IndexOptions:
    """Options of one index run.

    Attributes:
        source: ``NLMCXR_reports.tgz``, a folder of XML reports, or a data folder holding either.
        images_dir: folder of Open-i-named radiographs (searched recursively), or ``None``: every
            report becomes a report point.
        metadata: the Open-i DICOM metadata table (``nlmcxr_dicom_metadata.csv.gz``): the view of
            images whose file carries none (PNGs).
        collection: the collection to write; created from ``schema`` when missing.
        schema: collection schema name (``collections/<name>.json``) used when creating it.
        batch_size: points per forward pass and per upsert (a killed run loses at most one batch).
        reindex: re-encode and overwrite points that already exist (default: skip them, i.e. resume).
        limit: index only the first ``limit`` reports (by report number).
        failures_dir: where the failures file goes (default ``<outputs>/index-failures``).
    """

    source: Path
    images_dir: Path | None = None
    metadata: Path | None = None
    collection: str = DEFAULT_COLLECTION
    schema: str = DEFAULT_SCHEMA
    batch_size: int = DEFAULT_BATCH_SIZE
    reindex: bool = False
    limit: int | None = None
    failures_dir: Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ConfigError(f"--limit must be a positive integer, got {self.limit!r}")
        if self.images_dir is not None and not Path(self.images_dir).is_dir():
            raise ConfigError("--images: not a directory", path=self.images_dir)
        if self.metadata is not None and not Path(self.metadata).is_file():
            raise ConfigError("--metadata: file not found", path=self.metadata)

    def resolved_failures_dir(self) -> Path:
        if self.failures_dir is not None:
            return Path(self.failures_dir)

        return paths.output_dir() / "index-failures"
