"""``cxrsearch data download openi --dest DIR [--images none|png|dicom] [--base-url URL]``.

Registered by ``cxrsearch/cli/data.py`` as ``app.command("download")(download_command)``. The
library (``cxrsearch.data.download``) does the work and reports progress through a callback; this
module turns that into rich progress bars on stderr and a summary table on stdout.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cxrsearch.cli.render import console, err_console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from cxrsearch.progress import ProgressEvent


class ImageSet(StrEnum):
    none = "none"
    png = "png"
    dicom = "dicom"


def download_command(
    dataset: str = typer.Argument(..., metavar="DATASET", help="The dataset to download; only 'openi' so far."),
    dest: Path | None = typer.Option(
        None, "--dest", help="Data folder to download into (default: $CXRSEARCH_DATA, else the user data dir)."
    ),
    images: ImageSet = typer.Option(
        ImageSet.none, "--images", help="Also fetch and extract the radiographs: png (~1.3 GB) or dicom (much larger)."
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="Mirror serving the NLMCXR_*.tgz files (default: $CXRSEARCH_OPENI_URL, else NLM).",
    ),
) -> None:
    """Download the Open-i reports (and optionally images): resumable, verified, safely extracted."""
    from cxrsearch import paths
    from cxrsearch.data.download import download_openi, load_dataset

    load_dataset(dataset)  # a clear error for an unknown dataset name
    folder = paths.data_dir(dest)
    with _Bars() as bars:
        results = download_openi(folder, images=images.value, url=base_url, progress=bars)
    table = Table(title=f"Open-i data in {folder}")
    for column in ("archive", "status", "bytes", "sha256", "extracted to"):
        table.add_column(column)
    for item in results:
        status = f"resumed at byte {item.resumed_from}" if item.status == "resumed" else item.status
        extracted = f"{item.extracted_to} ({item.files} files)" if item.extracted_to else "(read as a tarball)"
        size = "" if item.size is None else f"{item.size:,}"
        table.add_row(item.archive.name, status, size, item.sha256[:16] + "…", extracted)
    console.print(table)
    console.print(f"next: cxrsearch data info {folder}", highlight=False, soft_wrap=True)


class _Bars:
    """A :data:`~cxrsearch.progress.ProgressCallback`: one bar per (stage, file ``name``) on stderr,
    started by the first event (so an early error is not preceded by an empty progress display)."""

    def __init__(self) -> None:
        self._bars: Progress | None = None
        self._tasks: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc) -> None:
        if self._bars is not None:
            self._bars.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if self._bars is None:
            from rich.progress import (  # here, not at module level: `cxrsearch --help` loads this module
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err_console,
            )
            self._bars.start()
        key = (event.stage, event.name)
        task = self._tasks.get(key)
        if task is None:
            description = f"{event.stage} {event.name}"
            self._tasks[key] = self._bars.add_task(description, total=event.total, completed=event.done)
        else:
            self._bars.update(task, completed=event.done, total=event.total)
