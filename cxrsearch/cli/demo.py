"""``cxrsearch demo``: the main job end to end (see :mod:`cxrsearch.workflows.demo`); what ``make demo`` runs.

Steps, notices and progress bars go to stderr; the index summary and the three search tables to
stdout. torch is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxrsearch.cli.index import IndexProgress, print_failures
from cxrsearch.cli.progress import TrainProgress
from cxrsearch.cli.render import console, err_console
from cxrsearch.defaults import DEFAULT_COLLECTION
from cxrsearch.model.train_report import TrainEvent
from cxrsearch.progress import ProgressCallback, ProgressEvent


class _DemoView:
    """Renders the demo's :class:`~cxrsearch.progress.ProgressEvent` s: one progress display at a
    time (training or indexing); ``"notice"`` and ``"step"`` as lines."""

    def __init__(self) -> None:
        self.active: TrainProgress | IndexProgress | None = None
        self.showing = ""

    def close(self) -> None:
        if self.active is not None:
            self.active.__exit__(None, None, None)
        self.active, self.showing = None, ""

    def _ensure(self, showing: str) -> ProgressCallback:
        if self.showing != showing or self.active is None:
            self.close()
            self.active = (TrainProgress(time_remaining=False) if showing == "train" else IndexProgress()).__enter__()
            self.showing = showing
        return self.active

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, TrainEvent):
            self._ensure("train")(event)
        elif event.stage == "index":
            self._ensure("index")(event)
        else:
            self.close()
            style = "bold yellow" if event.stage == "notice" else "bold"
            prefix = "notice: " if event.stage == "notice" else ""
            err_console.print(f"[{style}]{prefix}[/{style}]{event.message}", highlight=False)


def _summary(result) -> Table:
    table = Table(title="cxrsearch demo", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    model = result.model
    auroc = f"{model.val_macro_auroc:.3f}" if model.val_macro_auroc is not None else "-"
    trained = f"trained now in {model.seconds:.0f} s" if model.trained_now else "reused"
    index = result.index
    rows = (
        ("reports", f"{result.data.reports} ({result.data.origin})"),
        ("model", f"{model.config} at {model.checkpoint} ({trained}; val macro AUROC {auroc})"),
        (
            "collection",
            f"{index.collection!r} in {index.store}: {index.count:,} points "
            f"({index.indexed:,} written now, {index.skipped_existing:,} already there)",
        ),
        ("time", f"{result.seconds:.0f} s"),
    )
    for key, value in rows:
        table.add_row(key, value)
    return table


def demo(
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        metavar="DIR",
        help=(
            "Open-i reports: NLMCXR_reports.tgz or a folder holding it "
            "(default: $CXRSEARCH_DATA, else the user data dir, else download)."
        ),
    ),
    store: Optional[Path] = typer.Option(
        None,
        "--store",
        metavar="DIR",
        help="Embedded store directory (default: $CXRSEARCH_STORE, else the user data dir).",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help=f"Retrain the demo model and rebuild the {DEFAULT_COLLECTION!r} collection from scratch."
    ),
) -> None:
    """Run the main job: find Open-i data, train (or reuse) a small model, index every study, search.

    A second run reuses the model and the index, so it takes seconds.
    """
    from cxrsearch.cli.search import hits_table
    from cxrsearch.workflows.demo import DemoOptions, run_demo

    view = _DemoView()
    try:
        result = run_demo(DemoOptions(data=data, store=store, fresh=fresh), on_event=view)
    finally:
        view.close()
    console.print(_summary(result))
    for found in result.searches:
        console.print()
        console.print(hits_table(f"{found.title}\n$ cxrsearch {found.command}", list(found.hits)))
    for notice in result.notices:
        console.print(f"[bold yellow]notice:[/bold yellow] {notice}", highlight=False)
    print_failures(result.index)
    if not result.index.ok:
        raise typer.Exit(1)
