"""Progress on stderr for long commands: views of the library's
:class:`~cxrsearch.progress.ProgressEvent` s (each is a :data:`~cxrsearch.progress.ProgressCallback`).

:class:`StageProgress`: a rich bar per stage on a terminal, plain lines otherwise (so logs and
scripts can follow a run). :class:`TrainProgress`: the training view of ``train`` and ``demo``.
rich.progress is imported only when one is made (``cxrsearch --help`` stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, cast

from cxrsearch.cli.render import err_console
from cxrsearch.model.train_report import TrainEvent

if TYPE_CHECKING:
    from rich.progress import TaskID

    from cxrsearch.model.train_report import EpochReport
    from cxrsearch.progress import ProgressEvent


class StageProgress:
    """``progress(event)``: one transient rich bar per ``event.stage`` on a terminal.

    Off a terminal it prints ``"<stage>: <done>/<total><unit>"``: on every update with ``every_line``,
    else only when a stage starts and when it ends.
    """

    def __init__(self, unit: str = "", every_line: bool = False, time_remaining: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.unit, self.every_line = unit, every_line
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if time_remaining:
            columns.append(TimeRemainingColumn())
        self.bars = Progress(*columns, console=err_console, transient=True) if err_console.is_terminal else None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def __call__(self, event: ProgressEvent) -> None:
        self.show(event.stage, event.done, event.total)

    def show(self, stage: str, done: int, total: int | None) -> None:
        """Draw ``done`` of ``total`` (``None``: unknown) under ``stage``."""
        if self.bars is None:
            if self.every_line or stage not in self.tasks or done == total:
                self.tasks.setdefault(stage, cast("TaskID", 0))
                shown = "?" if total is None else total
                err_console.print(f"{stage}: {done}/{shown}{self.unit}", highlight=False, soft_wrap=True)
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)


class TrainProgress:
    """``progress(event)``: :class:`~cxrsearch.model.train_report.TrainEvent` s as transient rich bars
    on stderr (feature caching, the current epoch with its loss) and one line per finished epoch.

    A context manager: the bars show between ``__enter__`` and ``__exit__``.
    """

    def __init__(self, time_remaining: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[ProgressColumn] = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        ]
        if time_remaining:
            columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, console=err_console, transient=True)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, key: str, description: str, total: int | None) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, info="")
        return self.tasks[key]

    def __call__(self, event: ProgressEvent) -> None:
        """Draw a :class:`~cxrsearch.model.train_report.TrainEvent` (other events are not training's)."""
        if not isinstance(event, TrainEvent):
            return
        epoch = f"epoch {event.epoch}"
        if event.stage in ("data", "model"):
            self.progress.console.print(f"[dim]{event.message}[/dim]")
        elif event.stage == "features":
            task = self._task(event.message, f"caching {event.message}", event.total)
            self.progress.update(task, completed=event.done, total=event.total)
        elif event.stage == "epoch_start":
            self._task(epoch, epoch, event.total)
        elif event.stage == "step":
            task = self._task(epoch, epoch, event.total)
            self.progress.update(task, completed=event.done, info=f"loss {event.loss:.4f}")
        elif event.stage == "validate":
            self.progress.update(self._task(epoch, epoch, 1), info="validating")
        elif event.stage == "epoch_end" and event.report is not None:
            self.progress.remove_task(self.tasks.pop(epoch))
            self._epoch_line(event.report)

    def _epoch_line(self, r: EpochReport) -> None:
        mark = "  [green]saved (best)[/green]" if r.improved else ""
        self.progress.console.print(
            f"epoch {r.epoch:>3}  loss {r.train_loss:.4f}  val macro AUROC {r.val_macro_auroc:.4f}  "
            f"{r.seconds:.1f}s{mark}"
        )
