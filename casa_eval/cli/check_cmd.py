"""`casa-eval check`: the CI gate. Exit 0 pass, 1 regression, 2 invalid input or not comparable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from casa_eval.cli.console import console
from casa_eval.errors import UserError

_STYLE = {"pass": "green", "fail": "bold red", "invalid": "yellow"}


def check(
    results: Annotated[Path, typer.Argument(help="Run directory (or its results.json) to judge.")],
    thresholds: Annotated[Path, typer.Option(help="Thresholds YAML (see docs/check.md).")],
    baseline: Annotated[Path | None, typer.Option(help="Baseline run for accuracy drops and efficiency "
                                                  "ratios.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Also write the checks as JUnit XML.")] = None,
) -> None:
    """Judge a run against thresholds (and a baseline): a table of every check, and the exit code."""
    from casa_eval.check import Thresholds, exit_code, run_checks
    from casa_eval.check.junit import write_junit
    from casa_eval.config import load_yaml_model

    rules = load_yaml_model(thresholds, Thresholds)
    candidate, base = _load(results, "results"), _load(baseline, "--baseline") if baseline else None
    checks = run_checks(candidate, rules, base)
    table = Table("check", "subject", "value", "threshold", "verdict", "detail",
                  title=f"casa-eval check {results}" + (f" against {baseline}" if baseline else ""))
    for c in checks:
        table.add_row(c.kind, c.subject, c.value, c.threshold, f"[{_STYLE[c.verdict]}]{c.verdict}[/]", c.detail)
    console.print(table)
    if junit is not None:
        write_junit(checks, junit)
    code = exit_code(checks)
    counts = {v: sum(c.verdict == v for c in checks) for v in ("pass", "fail", "invalid")}
    summary = f"{counts['pass']} passed, {counts['fail']} regressed, {counts['invalid']} invalid"
    if code == 0:
        console.print(f"[green]check passed[/]: {summary}")
    else:
        reason = "regression" if code == 1 else "invalid input or not comparable"
        console.print(f"[bold red]check failed ({reason})[/]: {summary}")
    raise typer.Exit(code)


def _load(path: Path, what: str) -> Any:
    from casa_eval.check import Run
    from casa_eval.results.schema import SchemaVersionError

    try:
        return Run.load(path)
    except FileNotFoundError:
        raise UserError(f"{what}: no results document at {path}") from None
    except (SchemaVersionError, ValueError) as exc:
        raise UserError(f"{what}: {str(exc).splitlines()[0]}") from None
