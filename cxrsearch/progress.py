"""The one progress event every long-running library call reports (layer 0: standard library only).

A call that takes ``progress: ProgressCallback | None`` calls it with a :class:`ProgressEvent` as its
work advances; the library never prints, the CLI draws the events (``cxrsearch/cli/progress.py``).
Who emits which ``stage``:

- downloads (:mod:`cxrsearch.data.fetch`, :mod:`~cxrsearch.data.extract`, :mod:`~cxrsearch.data.download`):
  ``"download"``, ``"verify"``, ``"extract"``; ``done``/``total`` bytes of the file ``name``
  (``total`` is ``None`` when the server does not say);
- indexing (:func:`cxrsearch.index.index_studies`): ``"index"``; ``done``/``total`` points, ``name``
  the collection;
- copying a collection (:func:`cxrsearch.store.migrate.migrate_collection`): ``"migrate"``;
  ``done``/``total`` points, ``name`` the collection;
- frozen-tower features (:mod:`cxrsearch.model.feature_cache`): ``"text features"``,
  ``"image features"``; ``done``/``total`` texts or radiographs;
- evaluation (:mod:`cxrsearch.evaluate.run`, :mod:`~cxrsearch.evaluate.retrieval`):
  ``"index <method>"`` and ``"<setting> <mode>"``; ``done``/``total`` points or searched queries;
- training (:func:`cxrsearch.model.train.train`): :class:`~cxrsearch.model.train_report.TrainEvent`,
  a subclass adding the epoch, the loss and the epoch's report;
- the demo (:func:`cxrsearch.workflows.demo.run_demo`): ``"notice"`` and ``"step"`` (``message``),
  and the training's and the index's events, forwarded unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report. ``stage``: what is being done (see the module docstring); ``done`` of
    ``total`` units (``total`` is ``None`` when unknown); ``name``: the item worked on (a file name,
    a collection; empty when none); ``message``: text for a person (empty when none)."""

    stage: str
    done: int = 0
    total: int | None = None
    name: str = ""
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]
"""Called with each :class:`ProgressEvent` as work advances."""
