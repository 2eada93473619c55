"""Indexing: Open-i reports (+ radiographs) -> checkpoint embeddings -> points in a Qdrant collection.

- :mod:`~cxrsearch.index.options`: :class:`IndexOptions`
- :mod:`~cxrsearch.index.plan`: which points a source gives (image points, report points): :class:`Plan`
- :mod:`~cxrsearch.index.points`: decode, encode, named vectors and payload of a batch
- :mod:`~cxrsearch.index.record`: the checkpoint a collection was indexed with; collection checks
- :mod:`~cxrsearch.index.run`: :func:`index_studies`, resumable and idempotent (a prebuilt ``plan=`` is
  indexed without reading the source again); progress as :class:`~cxrsearch.progress.ProgressEvent`
  ``"index"``
- :mod:`~cxrsearch.index.report`: :class:`IndexReport`, :class:`Failure` and the failures file

Importing this package is light (no torch, no numpy): every search reads :mod:`.record`, so
:mod:`.plan` and :mod:`.run` (which read radiographs, and import numpy with the image package) are
imported when one of their names is first used; the model is imported when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrsearch.index.options import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, IndexOptions
from cxrsearch.index.record import ModelRecord, recorded_model
from cxrsearch.index.report import Failure, IndexReport

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.index.plan import Plan, build_plan, plan_items
    from cxrsearch.index.run import index_studies


def __getattr__(name: str) -> Any:
    """``Plan``, ``build_plan``, ``plan_items`` and ``index_studies``, imported on first use (PEP 562)."""
    if name in ("Plan", "build_plan", "plan_items"):
        from cxrsearch.index import plan

        return getattr(plan, name)
    if name == "index_studies":
        from cxrsearch.index.run import index_studies

        return index_studies
    raise AttributeError(f"module 'cxrsearch.index' has no attribute {name!r}")


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_COLLECTION",
    "Failure",
    "IndexOptions",
    "IndexReport",
    "ModelRecord",
    "Plan",
    "build_plan",
    "index_studies",
    "plan_items",
    "recorded_model",
]
