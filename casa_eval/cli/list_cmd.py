"""`casa-eval list models|tasks|profiles`."""

from __future__ import annotations

import typer

from casa_eval.cli.console import console, say, table
from casa_eval.registry import PAPER_MODELS, ZOO_MODELS, available_profiles, available_tasks, trained_models

app = typer.Typer(help="List the models, tasks and profiles casa-eval knows.", no_args_is_help=True)


@app.command("models")
def list_models() -> None:
    """Models: zoo mechanisms (offline, random weights or your checkpoint) and the casa paper's checkpoints."""
    rows = table("name", "mechanism", "source", "loaded through", "remote code", title="models")
    for name, (entry, _) in trained_models().items():
        rows.add_row(name, entry.mechanism, "trained in the fusion lab (shipped)", "casa-eval fusion zoo", "no")
    for entry in ZOO_MODELS.values():
        rows.add_row(entry.name, entry.mechanism, "zoo, random weights", "casa-eval fusion zoo", "no")
    through = {"kyutai": "Kyutai's remote-code interface", "family": "transformers ({family})",
               "unsupported": "no adapter yet"}
    for entry in PAPER_MODELS.values():
        rows.add_row(entry.name, entry.mechanism, entry.source,
                      through[entry.kind].format(family=entry.family),
                      "yes (--trust-remote-code)" if entry.remote_code else "no")
    console.print(rows)
    say("Any model also takes a local directory: --models NAME=DIR (e.g. casa=/models/CASA-Helium1-VL-2B).")


@app.command("tasks")
def list_tasks() -> None:
    """lmms-eval tasks shipped in casa-eval's tasks/ directory."""
    rows = table("name", "data", "description", title="tasks")
    for entry in available_tasks().values():
        rows.add_row(entry.name, entry.dataset, entry.description)
    console.print(rows)


@app.command("profiles")
def list_profiles() -> None:
    """Streaming-profile scenarios in profiles/."""
    rows = table("name", "file", title="profiles")
    for name, path in available_profiles().items():
        rows.add_row(name, str(path))
    console.print(rows)
