"""`casa-eval check`: the CI gate. Exit 0 pass, 1 regression, 2 invalid input, not comparable or not a verdict
(see casa_eval.check.gate), 3 an internal error of casa-eval itself (a bug to report, never a regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from casa_eval.cli.console import console, say, table
from casa_eval.errors import UserError

INTERNAL_ERROR = 3
_STYLE = {"pass": "green", "fail": "bold red", "invalid": "yellow", "skip": "dim"}


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
    say(f"casa-eval check {escape(str(results))}" + (f" against {escape(str(baseline))}" if baseline else ""))
    try:
        checks = run_checks(candidate, rules, base)
    except UserError:  # damaged input found while checking (a per-sample file): one line, exit 2
        raise
    except Exception as exc:  # a bug in the gate must not read as a regression (1) or bad input (2)
        raise UserError(f"internal error in casa-eval check ({type(exc).__name__}: {exc}); please report it",
                        exit_code=INTERNAL_ERROR) from exc
    rows = table("check", "subject", "value", "threshold", "verdict")
    for c in checks:
        rows.add_row(c.kind, escape(c.subject), escape(c.value), escape(c.threshold),
                     f"[{_STYLE[c.verdict]}]{c.verdict}[/]")
    console.print(rows)
    for line in detail_lines(checks):
        say(line)
    if junit is not None:
        write_junit(checks, junit)
    code = exit_code(checks)
    counts = {v: sum(c.verdict == v for c in checks) for v in ("pass", "fail", "invalid", "skip")}
    summary = f"{counts['pass']} passed, {counts['fail']} regressed, {counts['invalid']} invalid"
    if counts["skip"]:
        summary += f", {counts['skip']} skipped"
    if code == 0:
        say(f"[green]check passed[/]: {summary}")
    else:
        reason = "regression" if code == 1 else "invalid input or not comparable"
        say(f"[bold red]check failed ({reason})[/]: {summary}")
    raise typer.Exit(code)


def detail_lines(checks: list[Any]) -> list[str]:
    """Why each check that did not pass failed or is invalid, one full line per distinct reason (a reason
    shared by many checks, such as a baseline from other hardware, is said once with the count)."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for c in checks:
        if c.verdict != "pass" and c.detail:
            reasons.setdefault((c.verdict, c.detail), []).append(c.subject)
    lines = []
    for (verdict, detail), subjects in reasons.items():
        which = subjects[0] if len(subjects) == 1 else f"{len(subjects)} checks, e.g. {subjects[0]}"
        lines.append(f"[{_STYLE[verdict]}]{verdict}[/] ({escape(which)}): {escape(detail)}")
    return lines


def _load(path: Path, what: str) -> Any:
    from casa_eval.check import Run
    from casa_eval.results.schema import SchemaVersionError

    try:
        return Run.load(path)
    except FileNotFoundError:
        raise UserError(f"{what}: no results document at {path}") from None
    except (SchemaVersionError, ValueError) as exc:
        raise UserError(f"{what}: {str(exc).splitlines()[0]}") from None
