"""`casa-eval report`: one self-contained HTML file for one or several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from casa_eval.cli.console import say
from casa_eval.errors import UserError


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (or results.json files); several runs "
                                               "are shown side by side (baseline first).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (default: "
                                             "report.html in the first run directory).")] = None,
) -> None:
    """Write the HTML report: accuracy, streaming efficiency per turn, and the samples."""
    from casa_eval.report import build_report
    from casa_eval.results.schema import RESULTS_FILE

    for run in runs:
        if not (run / RESULTS_FILE if run.is_dir() else run).is_file():
            raise UserError(f"no results document at {run}")
    target = out or (runs[0] if runs[0].is_dir() else runs[0].parent) / "report.html"
    try:
        build_report(runs, target)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    say(f"report: [bold]{escape(str(target))}[/]")
