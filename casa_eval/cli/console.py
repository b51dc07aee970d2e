"""The CLI's console: rich output, progress bars and the one-line error convention."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from casa_eval.results.schema import MetricResult


def _width(stream: object) -> int | None:
    """Rich's own width in a terminal; a wide fixed width when output goes to a file or a CI log."""
    isatty = getattr(stream, "isatty", None)
    if (callable(isatty) and isatty()) or os.environ.get("COLUMNS"):
        return None
    return 160


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A line the user should read but that stops nothing (on stderr, never wrapped)."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A line the user must read whole (a path, a reason, the next command): never wrapped or cut, whatever
    the width, so it can be copied and searched in a CI log. `message` may hold rich markup."""
    console.print(message, highlight=False, soft_wrap=True)


def table(*columns: str, title: str | None = None) -> Table:
    """A rich table for short values. Cells that do not fit are folded onto more lines, never cut with an
    ellipsis; anything long (reasons, paths) belongs in a `say` line after the table, not in a cell."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column, overflow="fold")
    return out


class ProgressReporter:
    """Draws one progress bar per model x task from the run's callbacks."""

    def __init__(self, progress: Progress, total_per_task: int | None) -> None:
        self.progress = progress
        self.total = total_per_task
        self.stage_task = progress.add_task("starting", total=None)
        self.current: TaskID | None = None

    def stage(self, message: str) -> None:
        self.progress.update(self.stage_task, description=message)

    def task_started(self, model: str, task: str) -> None:
        self.progress.update(self.stage_task, description=f"evaluating {model}", visible=True)
        self.current = self.progress.add_task(f"{model} · {task}", total=self.total)

    def advance(self, done: int) -> None:
        if self.current is not None:
            self.progress.advance(self.current, done)

    def task_finished(self, model: str, task: str, metrics: list[MetricResult]) -> None:
        if self.current is not None:
            task_info = self.progress.tasks[self.current]
            summary = ", ".join(f"{m.metric}={m.value:.3f}" for m in metrics[:2])
            self.progress.update(self.current, total=task_info.completed, description=f"{model} · {task}  {summary}")
        self.current = None
        self.progress.update(self.stage_task, visible=False)


def make_progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)
