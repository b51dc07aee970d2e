"""`casa-eval data pull|verify`: offline snapshots of the datasets casa-paper tasks evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from casa_eval.cli.console import console, say, table
from casa_eval.errors import UserError

app = typer.Typer(help="Offline dataset snapshots (pull where the hub is reachable, copy, run anywhere).",
                  no_args_is_help=True)


def _hub_tasks(names: list[str]) -> list[tuple[str, Path]]:
    """(task name, source.jsonl) for the named tasks (`all` = every task with a hub source)."""
    from casa_eval.evaluation.preflight import HUB_SOURCE_FILE
    from casa_eval.registry import available_tasks, resolve_tasks

    entries = list(available_tasks().values()) if names == ["all"] else resolve_tasks(names)
    out = [(t.name, t.path.parent / HUB_SOURCE_FILE) for t in entries if (t.path.parent / HUB_SOURCE_FILE).is_file()]
    skipped = [t.name for t in entries if not (t.path.parent / HUB_SOURCE_FILE).is_file()]
    if names != ["all"] and skipped:
        raise UserError(f"{', '.join(skipped)}: no hub dataset to pull (generated locally or defined elsewhere)")
    return out


@app.command("pull")
def pull(
    tasks: Annotated[str, typer.Argument(help="Comma-separated tasks (e.g. docvqa,chartqa) or 'all'.")],
    to: Annotated[Path, typer.Option("--to", help="Data directory to write the snapshots into.")],
    pin: Annotated[bool, typer.Option(help="Write each resolved dataset revision back into the task's "
                                      "source.jsonl (run in a checkout, then commit).")] = False,
) -> None:
    """Download each task's pinned dataset and write a relocatable, checksummed snapshot."""
    from casa_eval._env import prepare_environment
    from casa_eval.registry import split_names

    prepare_environment(online=True)
    from casa_eval.data.snapshots import pull as pull_one
    from casa_eval.data.snapshots import read_manifest
    from casa_eval.data.tasks import datasets_of, read_source, write_source
    from casa_eval.evaluation.preflight import check_writable

    check_writable(to)
    rows = table("task", "dataset", "rows", "revision", "snapshot", title=f"snapshots in {to}")
    for name, source in _hub_tasks(split_names(tasks)):
        spec = read_source(source)
        for dataset in datasets_of(spec):
            say(escape(f"pulling {dataset.describe()} for {name} ..."))
            try:
                path = pull_one(dataset, to)
            except Exception as exc:  # hub and datasets raise many error types; one line says which failed
                raise UserError(f"{name}: could not pull {dataset.describe()}: {str(exc).splitlines()[0]}") from None
            manifest = read_manifest(path)
            revision = manifest.get("resolved_revision")
            rows.add_row(name, dataset.describe(), str(manifest["rows"]), str(revision or "—"), path.name)
        if pin and revision and revision != spec.revision:
            write_source(source, spec.model_copy(update={"revision": revision}))
    console.print(rows)
    say(escape(f"offline runs: casa-eval run --data-dir {to} ...  (or export CASA_EVAL_DATA_DIR={to})"))


@app.command("verify")
def verify(directory: Annotated[Path, typer.Argument(help="A data directory written by `data pull`.")]) -> None:
    """Check every snapshot in a data directory against its checksums (exit 1 if any is damaged)."""
    from casa_eval.data.snapshots import MANIFEST, read_manifest
    from casa_eval.data.snapshots import verify as verify_one

    snapshots = sorted(p for p in directory.iterdir() if (p / MANIFEST).is_file()) if directory.is_dir() else []
    if not snapshots:
        raise UserError(f"{directory} holds no snapshots")
    rows = table("snapshot", "rows", "state", title=f"snapshots in {directory}")
    damaged = 0
    for path in snapshots:
        problems = verify_one(path)
        damaged += bool(problems)
        rows.add_row(path.name, str(read_manifest(path).get("rows")), problems[0] if problems else "ok")
    console.print(rows)
    if damaged:
        raise typer.Exit(1)
