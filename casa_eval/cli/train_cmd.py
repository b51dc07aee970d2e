"""`casa-eval train`: the fusion lab — train zoo mechanisms under identical conditions (docs/lab.md)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from casa_eval.cli.console import console, say, table
from casa_eval.errors import UserError


def train(
    mechanisms: Annotated[str | None, typer.Option("--mechanisms", "-m", help="Comma-separated mechanisms "
                                                   "(default: all eight built-in ones); a mechanism of your own "
                                                   "by entry-point name or import path module:Class.")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Lab tasks to train on, mixed evenly "
                                              "(default: every lab task, the easiest fine-grained level and the "
                                              "coarse and recall tasks weighted up; docs/lab.md).")] = None,
    data: Annotated[Path | None, typer.Option(help="Train on a dataset folder of your own (train.jsonl, "
                                              "test.jsonl, images) instead of the lab tasks.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps per mechanism (default 2000).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Examples per step (default 16).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 1e-3).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated training seeds (default 0): each seed is a "
                                              "new shared initialisation and data order.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default 2; keep it fixed to "
                                                "reproduce weights bitwise).")] = None,
    freeze: Annotated[str | None, typer.Option(help="Keep shared parts fixed: backbone, vision or both "
                                               "(default: train everything).")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Where checkpoints go "
                                                    "(default reports/train-<time>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted training run in --output-dir.")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML file with any training setting (and `model:` "
                                                "dimensions).")] = None,
) -> None:
    """Train fusion mechanisms on the lab tasks (or your data) under identical conditions; evaluate the result
    with `casa-eval run --trained DIR`."""
    from casa_eval._env import prepare_environment

    prepare_environment()
    from casa_eval.config import load_yaml_model, read_json, validate_data
    from casa_eval.evaluation.preflight import check_writable
    from casa_eval.registry import split_names
    from casa_eval.training import SETTINGS_FILE, TrainSettings

    given: dict[str, Any] = {
        "mechanisms": split_names(mechanisms) or None, "tasks": split_names(tasks) or None, "data": data,
        "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "threads": threads,
        "seeds": _seeds(seeds), "freeze": split_names(freeze) or None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    base: dict[str, Any] = {}
    if config is not None:
        base = load_yaml_model(config, TrainSettings).model_dump(exclude_unset=True)
    if resume:
        if output_dir is None:
            raise UserError("--resume needs --output-dir (the training run to continue)")
        stored_path = output_dir / SETTINGS_FILE
        if not stored_path.is_file():
            raise UserError(f"nothing to resume in {output_dir} (no {SETTINGS_FILE})")
        stored = validate_data(TrainSettings, read_json(stored_path, "training settings"), str(stored_path))
        requested = validate_data(TrainSettings, {**stored.model_dump(), **base, **given}, "training settings")
        changed = [k for k in {**base, **given} if getattr(requested, k) != getattr(stored, k)]
        if changed:
            raise UserError(f"--resume continues {output_dir} with its stored settings; {', '.join(changed)} "
                            "differ — start a new --output-dir instead")
        settings = stored
    else:
        settings = validate_data(TrainSettings, {**base, **given}, "training settings")
    out = output_dir or Path("reports") / f"train-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    first = int(os.environ.get("RANK", "0")) == 0  # under a data-parallel launch only the first process writes
    if first and not resume and (out / SETTINGS_FILE).exists():
        raise UserError(f"{out} already holds a training run; pass --resume to continue it, or choose another "
                        "--output-dir")
    check_writable(out)
    _check_mechanisms(settings)
    if settings.data is not None:
        from casa_eval.training.data import FolderData

        FolderData(settings.data, 0)  # a malformed dataset fails now, naming the file and line
    if first:
        (out / SETTINGS_FILE).write_text(settings.model_dump_json(indent=2) + "\n")
        if settings.data is not None:
            from casa_eval.training.tasks import write_folder_task

            write_folder_task(settings.data, out)

    from casa_eval.training import train as run_training

    with _progress(visible=first) as progress:
        reporter = TrainProgress(progress)
        try:
            records = run_training(settings, out, reporter=reporter)
        except KeyboardInterrupt:
            progress.stop()
            raise UserError(f"interrupted; every finished step is saved in {out}. Continue with: casa-eval train "
                            f"--resume --output-dir {out}", exit_code=130) from None
    if not first:
        return
    rows = table("model", "seed", "steps", "final loss", "wall s", "trained params")
    for r in records:
        tail = r.loss[-50:]
        rows.add_row(r.name, str(r.seed), str(r.steps), f"{sum(tail) / max(len(tail), 1):.4f}",
                     f"{r.wall_seconds:.0f}", f"{r.trained_parameters:,}")
    console.print(rows)
    say(f"checkpoints: [bold]{escape(str(out))}[/]  evaluate them with: casa-eval run --trained "
        f"{escape(str(out))}")


def _seeds(value: str | None) -> list[int] | None:
    from casa_eval.registry import split_names

    items = split_names(value)
    if not items:
        return None
    bad = [s for s in items if not s.lstrip("-").isdigit()]
    if bad:
        raise UserError(f"--seeds takes integers, not {bad[0]!r}")
    return [int(s) for s in items]


def _check_mechanisms(settings: Any) -> None:
    """Every mechanism's class imports before any training starts (one line per failure)."""
    from casa_eval.fusion.mechanisms import MechanismError, mechanism_class

    problems = []
    for name in settings.mechanisms:
        try:
            mechanism_class(name)
        except MechanismError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError(problems)


def _progress(visible: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} ex/s"),
                    TimeElapsedColumn(), console=console, transient=False, disable=not visible)


class TrainProgress:
    """One bar per mechanism x seed, with the running loss and examples per second; without a terminal (a CI
    log), where a live bar draws nothing until the end, one line per model as it finishes instead."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}
        self.smoothed: dict[str, float] = {}

    def started(self, label: str, total: int, done: int) -> None:
        self.bars[label] = self.progress.add_task(label, total=total, completed=done, loss="—", speed="—")

    def step(self, label: str, step: int, loss: float, examples_per_s: float) -> None:
        previous = self.smoothed.get(label)
        self.smoothed[label] = loss if previous is None else 0.95 * previous + 0.05 * loss
        self.progress.update(self.bars[label], completed=step, loss=f"{self.smoothed[label]:.3f}",
                             speed=f"{examples_per_s:.0f}")

    def finished(self, label: str, record: Any) -> None:
        self.progress.update(self.bars[label], completed=record.steps)
        if not console.is_terminal and not self.progress.disable:
            say(f"{escape(label)}: {record.steps} steps, loss {self.smoothed.get(label, float('nan')):.3f}, "
                f"{record.wall_seconds:.0f} s")
