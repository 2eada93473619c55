"""What an index run will write: reports (read one file at a time) paired with image files -> items.

A *point* is one radiograph with its report, or one report without a radiograph:

- with ``--images DIR``, every ``parentImage`` of a report whose file is in ``DIR`` (paired by its
  Open-i name, see :mod:`cxrsearch.data.pairing`) becomes one image point keyed by the image id;
  a report none of whose images is in ``DIR`` (104 real reports reference no image at all) becomes
  one report point keyed by the study id;
- without ``--images`` every report becomes one report point.

A report with neither text (no FINDINGS or IMPRESSION; 28 real ones) nor a radiograph in ``DIR``
has nothing to embed: it is counted as ``empty`` and written nowhere. A report file that cannot be
parsed is a per-file failure; the other reports are still planned.

:func:`build_plan` reads what :class:`~cxrsearch.index.options.IndexOptions` names (what
``cxrsearch index`` runs); :func:`plan_items` pairs studies read elsewhere. A :class:`Plan` is keyed
for one collection (point ids derive from it); :meth:`Plan.for_collection` re-keys it for another
without reading anything again (``cxrsearch evaluate`` indexes one source into two collections).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cxrsearch.data import pairing
from cxrsearch.data.openi import Study, iter_report_files, parse_report
from cxrsearch.errors import ReportError
from cxrsearch.index.report import Failure
from cxrsearch.store.base import point_id

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.index.options import IndexOptions


@dataclass(frozen=True)
class IndexItem:
    """One point to write.

    Attributes:
        point_id: deterministic UUIDv5 of ``collection/key`` (:func:`cxrsearch.store.point_id`).
        key: the image id (``CXR3029_IM-1404-1001``) of an image point, the study id of a report point.
        study: the report.
        text: the report text the model reads (``""``: no text, the point gets no ``text`` vector).
        image_id: the image id, ``None`` for a report point.
        image_path: the image file, ``None`` for a report point.
        table_view: the view from the Open-i metadata table (``--metadata``), used when the file
            itself (a PNG, or a DICOM without *ViewPosition*) carries none.
    """

    point_id: str
    key: str
    study: Study
    text: str
    image_id: str | None = None
    image_path: Path | None = None
    table_view: str | None = None

    @property
    def has_image(self) -> bool:
        return self.image_path is not None


@dataclass(frozen=True)
class Plan:
    """Everything one run could write, before asking the store what already exists.

    Attributes:
        collection: the collection the items' point ids are keyed for.
        items: the points, in report order (images of a report in their ``parentImage`` order).
        studies: reports read (after ``--limit``).
        image_refs: ``parentImage`` references of those reports.
        images_missing: references whose file is not in the images folder (0 without ``--images``).
        empty: reports skipped because they have neither text nor an image file.
        failures: reports that could not be read.
    """

    collection: str
    items: tuple[IndexItem, ...]
    studies: int
    image_refs: int
    images_missing: int
    empty: int
    failures: tuple[Failure, ...]

    def for_collection(self, collection: str) -> Plan:
        """This plan with its point ids keyed for ``collection`` (itself when it already is)."""
        if collection == self.collection:
            return self
        items = tuple(replace(item, point_id=point_id(collection, item.key)) for item in self.items)
        return replace(self, collection=collection, items=items)

    @property
    def has_images(self) -> bool:
        """Whether any point is a radiograph."""
        return any(item.has_image for item in self.items)


def build_plan(options: IndexOptions) -> Plan:
    """The plan of ``options``: its reports (the first ``limit``; a bad file is a failure, see
    :func:`read_studies`) paired with the radiographs of ``images_dir`` and the views of
    ``metadata``, keyed for ``options.collection``."""
    studies, failures = read_studies(options.source, options.limit)
    images = pairing.index_images(options.images_dir) if options.images_dir is not None else None
    views = pairing.load_view_table(options.metadata) if options.metadata is not None else None
    return plan_items(studies, options.collection, images, views, tuple(failures))


def read_studies(source: str | Path, limit: int | None = None) -> tuple[list[Study], list[Failure]]:
    """Every readable report of ``source`` (tgz, XML folder or data folder), in report-number order,
    plus one :class:`Failure` per report file that could not be parsed (or repeats a report).

    ``limit`` keeps the first ``limit`` reports by number. A missing source or a broken archive is
    not a per-file problem: it raises :class:`~cxrsearch.errors.ReportError`.
    """
    studies: dict[str, Study] = {}
    failures: list[Failure] = []
    for name, data in iter_report_files(source):
        try:
            study = parse_report(data, name)
        except ReportError as exc:
            failures.append(Failure(kind="report", path=name, error=exc.message))
            continue
        if study.uid in studies:
            failures.append(
                Failure(
                    kind="report",
                    path=name,
                    study_id=study.uid,
                    error=f"duplicate report {study.uid} (first read from {studies[study.uid].source})",
                )
            )
            continue
        studies[study.uid] = study
    if not studies and not failures:
        raise ReportError("no Open-i XML reports found", path=source)
    ordered = sorted(studies.values(), key=lambda s: s.number)
    return (ordered if limit is None else ordered[:limit]), failures


def plan_items(
    studies: list[Study],
    collection: str,
    images: Mapping[str, Path] | None = None,
    views: Mapping[str, str] | None = None,
    failures: tuple[Failure, ...] = (),
) -> Plan:
    """Pair ``studies`` with image files (``images``: image id -> path, from
    :func:`cxrsearch.data.pairing.index_images`; ``None`` = no images folder) into a :class:`Plan`.
    ``views``: image id -> view from the metadata table (:func:`~cxrsearch.data.pairing.load_view_table`)."""
    items: list[IndexItem] = []
    image_refs = missing = empty = 0
    for study in studies:
        text = study.report_text()
        image_refs += len(study.image_ids)
        found = []
        if images is not None:
            for image_id in study.image_ids:
                path = images.get(image_id)
                if path is None:
                    missing += 1
                else:
                    found.append((image_id, Path(path)))
        for image_id, path in found:
            view = views.get(image_id) if views is not None else None
            items.append(IndexItem(point_id(collection, image_id), image_id, study, text, image_id, path, view))
        if not found:
            if text:
                items.append(IndexItem(point_id(collection, study.uid), study.uid, study, text))
            else:
                empty += 1
    return Plan(collection, tuple(items), len(studies), image_refs, missing, empty, tuple(failures))
