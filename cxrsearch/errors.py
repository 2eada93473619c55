"""One error hierarchy for the whole library.

Library code raises a subclass of :class:`CxrSearchError`; the CLI turns it into a single line
``error: <file>: <what is wrong>`` on stderr and exit status 1 (see ``cxrsearch.cli.main``).
"""

from __future__ import annotations

from pathlib import Path


class CxrSearchError(Exception):
    """Base class. ``path`` names the file (or URL, or collection) the problem is about."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(CxrSearchError):
    """A bad option, environment variable or configuration file."""


class ReportError(CxrSearchError):
    """An Open-i XML report (or report archive) that cannot be read safely."""


class ImageError(CxrSearchError):
    """An image file that cannot be decoded into a grey radiograph."""


class DownloadError(CxrSearchError):
    """A download or archive extraction that failed or was refused."""


class ModelError(CxrSearchError):
    """A model config, weight source or checkpoint problem."""


class StoreError(CxrSearchError):
    """A Qdrant store problem: locked, unreachable, unauthorised, missing collection, bad schema."""


class QueryError(CxrSearchError):
    """A search/explain query that cannot be answered as asked."""
