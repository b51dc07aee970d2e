"""`casa-eval`: the command line. Heavy libraries are imported inside commands so `--help` stays fast."""

from __future__ import annotations

import sys

import typer

from casa_eval.cli import (
    check_cmd,
    data_cmd,
    list_cmd,
    profile_cmd,
    report_cmd,
    run_cmd,
    tiny_cmd,
    train_cmd,
    verify_cmd,
)
from casa_eval.cli.console import error
from casa_eval.errors import UserError

app = typer.Typer(
    name="casa-eval",
    help="Accuracy (through lmms-eval) and streaming cost of vision-language fusion mechanisms, in one run.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run", rich_help_panel="Evaluate", no_args_is_help=False)(run_cmd.run)
app.command("profile", rich_help_panel="Evaluate")(profile_cmd.profile)
app.command("verify", rich_help_panel="Evaluate")(verify_cmd.verify)
app.command("train", rich_help_panel="Lab")(train_cmd.train)
app.command("report", rich_help_panel="Results")(report_cmd.report)
app.command("check", rich_help_panel="Results")(check_cmd.check)
app.add_typer(list_cmd.app, name="list", rich_help_panel="Utilities")
app.add_typer(data_cmd.app, name="data", rich_help_panel="Utilities")
app.command("tiny", rich_help_panel="Utilities")(tiny_cmd.tiny)


def main() -> None:
    try:
        app()
    except UserError as exc:
        for message in exc.messages:
            error(message)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
