"""``cxrsearch index``: encode Open-i studies with a checkpoint and write them to a collection.

Progress goes to stderr (a rich bar on a terminal, one plain line per batch otherwise, so logs and
scripts can follow it); the summary table to stdout. Exit status 1 when any file failed (the
failures file is named). torch is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxrsearch.cli.progress import StageProgress
from cxrsearch.cli.render import console, err_console
from cxrsearch.cli.store_options import ApiKey, QdrantUrl, StoreDir, Timeout, opened_store
from cxrsearch.defaults import DEFAULT_COLLECTION, DEFAULT_SCHEMA
from cxrsearch.progress import ProgressEvent


class IndexProgress(StageProgress):
    """A :data:`~cxrsearch.progress.ProgressCallback` for :func:`~cxrsearch.index.index_studies`:
    its ``"index"`` events as a rich bar under ``label``, or a plain line per batch off a terminal."""

    def __init__(self, label: str = "indexing") -> None:
        super().__init__(unit=" points", every_line=True, time_remaining=True)
        self.label = label

    def __call__(self, event: ProgressEvent) -> None:
        self.show(self.label, event.done, event.total)


def summary_table(report) -> Table:
    """The :class:`~cxrsearch.index.IndexReport` as a two-column table."""
    table = Table(title=f"Indexed into collection {report.collection!r}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("store", report.store),
        ("reports", f"{report.studies:,} ({report.empty:,} with neither text nor image: skipped)"),
        (
            "points planned",
            f"{report.planned:,} ({report.image_points:,} radiograph+report, {report.report_points:,} report only)",
        ),
        ("already stored", f"{report.skipped_existing:,} (skipped: resume)"),
        ("written now", f"{report.indexed:,}"),
        ("failed files", f"{report.failed:,}"),
        ("points in collection", f"{report.count:,}"),
        ("model", f"{report.model} {report.checkpoint} (fingerprint {report.fingerprint[:12]})"),
        ("time", f"{report.seconds:.1f} s"),
    ]
    if report.image_refs and report.images_missing:
        rows.insert(3, ("images not found", f"{report.images_missing:,} of {report.image_refs:,} referenced"))
    if report.inverted:
        rows.append(
            (
                "negatives inverted",
                f"{report.inverted:,} radiograph(s) stored as negatives, shown and encoded "
                "as positives (see docs/images.md)",
            )
        )
    if report.stale:
        rows.append(("stale report points", f"{report.stale:,} (studies now indexed with their radiographs)"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def print_failures(report) -> None:
    """The first failures and the failures file, on stderr."""
    if not report.failures:
        return
    err_console.print(
        f"[red]{report.failed} file(s) could not be indexed[/red]; all of them are listed in {report.failures_path}",
        highlight=False,
    )
    for failure in report.failures[:5]:
        err_console.print(f"  {failure.kind} {failure.path}: {failure.error}", highlight=False, markup=False)
    if report.failed > 5:
        err_console.print(f"  ... and {report.failed - 5} more", highlight=False)


def index(
    source: Path = typer.Argument(
        ...,
        metavar="DATA_DIR_OR_TGZ",
        help="NLMCXR_reports.tgz, a folder of XML reports, or a data folder holding either.",
    ),
    model: Path = typer.Option(..., "--model", metavar="CKPT", help="Checkpoint directory (from `cxrsearch train`)."),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        metavar="DIR",
        help="Folder of Open-i radiographs (searched recursively); without it every report is indexed text-only.",
    ),
    metadata: Optional[Path] = typer.Option(
        None,
        "--metadata",
        metavar="CSV",
        help="Open-i DICOM metadata table (nlmcxr_dicom_metadata.csv.gz): the view of PNG radiographs.",
    ),
    collection: str = typer.Option(
        DEFAULT_COLLECTION, "--collection", metavar="NAME", help="Collection to write (created when missing)."
    ),
    schema: str = typer.Option(
        DEFAULT_SCHEMA,
        "--schema",
        metavar="NAME",
        help="Schema (collections/NAME.json) used when creating the collection.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", metavar="N", help="Points per forward pass and per upsert."),
    reindex: bool = typer.Option(
        False, "--reindex", help="Re-encode and overwrite points already stored (default: skip them)."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", metavar="N", help="Index only the first N reports (by report number)."
    ),
    store: StoreDir = None,
    qdrant_url: QdrantUrl = None,
    api_key: ApiKey = None,
    timeout: Timeout = None,
) -> None:
    """Index studies: one point per radiograph with its report, one per report without a radiograph.

    Re-running never duplicates; an interrupted run resumes where it stopped. Files that cannot be
    read are listed in a failures file and make the exit status 1; the others are indexed.
    """
    from cxrsearch.index import IndexOptions, index_studies

    options = IndexOptions(
        source=source,
        images_dir=images,
        metadata=metadata,
        collection=collection,
        schema=schema,
        batch_size=batch_size,
        reindex=reindex,
        limit=limit,
    )
    with opened_store(store, qdrant_url, api_key, timeout) as backend:
        err_console.print(f"[dim]loading checkpoint {model}[/dim]", highlight=False)
        with IndexProgress() as progress:
            report = index_studies(options, backend, model, progress=progress)
    console.print(summary_table(report))
    print_failures(report)
    if not report.ok:
        raise typer.Exit(1)
