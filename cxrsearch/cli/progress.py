"""Progress on stderr for long commands: a rich bar per stage on a terminal, plain lines otherwise
(so logs and scripts can follow a run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, cast

from cxrsearch.cli.render import err_console

if TYPE_CHECKING:
    from rich.progress import TaskID


class StageProgress:
    """``progress(stage, done, total)``: one transient rich bar per stage on a terminal.

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

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bars is None:
            if self.every_line or stage not in self.tasks or done == total:
                self.tasks.setdefault(stage, cast("TaskID", 0))
                err_console.print(f"{stage}: {done}/{total}{self.unit}", highlight=False, soft_wrap=True)
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)
