"""`casa-eval run`: the main job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from casa_eval.cli.console import ProgressReporter, console, error, make_progress, say, table
from casa_eval.errors import UserError


def run(
    models: Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated model names, each "
                                               "optionally NAME=DIR for a local checkpoint (default: every trained "
                                               "lab model). See `casa-eval list models`.")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Comma-separated lmms-eval task names "
                                              "(default: the lab tasks).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Documents per task (default: all).")] = None,
    trained: Annotated[Path | None, typer.Option(help="A `casa-eval train` output directory: its checkpoints "
                                                 "(every seed) are the lab-* models (default: the shipped ones).")
                       ] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run directory "
                                                    "(default reports/run-<id>).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Requests per batch (default 8).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto (default).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for weights, data order and sampling (default 0).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run (default dir: reports/latest).")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML file with any of these settings "
                                                "(and `zoo:` model dimensions, `checkpoints:`).")] = None,
    include_path: Annotated[list[Path] | None, typer.Option("--include-path", help="Extra lmms-eval task "
                                                            "directory (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option(help="Streaming profile run after the accuracy evaluation "
                                                "(default lab-stream; 'none' to skip).")] = None,
    video: Annotated[Path | None, typer.Option(help="Video streamed by the profile (default: a synthesised "
                                               "clip).")] = None,
    online: Annotated[bool, typer.Option(help="Allow Hugging Face hub downloads (offline by default).")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow checkpoints that ship their own modeling code "
                                                    "(Kyutai's CASA models, mPLUG-Owl3).")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Offline dataset snapshots written by `casa-eval data "
                                                  "pull` (or set CASA_EVAL_DATA_DIR).")] = None,
    cross_attention_cache: Annotated[str | None, typer.Option(help="mllama (gated-xattn) cross-attention K/V: "
                                                              "'latest' keeps the latest run of images (the "
                                                              "model's semantics, default), 'append' every image "
                                                              "as transformers' cache does, 'replace' the latest "
                                                              "image only.")] = None,
) -> None:
    """Evaluate models on tasks through lmms-eval and write one results document.

    With no arguments: every mechanism trained in the fusion lab (the checkpoints shipped with casa-eval) on the
    lab tasks, then the lab-stream profile, offline.
    """
    from casa_eval._env import prepare_environment

    prepare_environment(online=online)
    from casa_eval.config import load_yaml_model, read_json, validate_data
    from casa_eval.evaluation.run import (
        SETTINGS_FILE,
        RunSettings,
        default_output_dir,
        execute_run,
        new_run_id,
        validate_names,
    )
    from casa_eval.registry import split_model_paths, split_names

    names, paths = split_model_paths(split_names(models))
    overrides: dict[str, Any] = {
        "models": names or None, "tasks": split_names(tasks) or None, "limit": limit,
        "output_dir": output_dir, "batch_size": batch_size, "device": device, "seed": seed,
        "include_paths": include_path or None, "video": video, "data_dir": data_dir,
        "trust_remote_code": trust_remote_code or None, "cross_attention_cache": cross_attention_cache,
        "trained": trained,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if trained is not None and (trained / "tasks").is_dir():  # trained on a dataset folder: its test split
        overrides["include_paths"] = [*(include_path or []), trained / "tasks"]
        if tasks is None:
            overrides["tasks"] = sorted(p.name for p in (trained / "tasks").iterdir() if p.is_dir())
    if profile is not None:
        overrides["profile"] = None if profile.lower() == "none" else profile
    base: dict[str, Any] = {}
    if config is not None:
        base = load_yaml_model(config, RunSettings).model_dump(exclude_unset=True)
    if paths:
        overrides["checkpoints"] = {**base.get("checkpoints", {}), **paths}
    if resume:
        run_dir = output_dir or _latest_run()
        stored = run_dir / SETTINGS_FILE
        overrides["output_dir"] = run_dir
        if stored.is_file():
            kept = validate_data(RunSettings, read_json(stored, "run settings"), str(stored))
            requested = validate_data(RunSettings, {**kept.model_dump(), **base, **overrides}, "run settings")
            changed = [k for k in {**base, **overrides}
                       if k != "output_dir" and getattr(requested, k) != getattr(kept, k)]
            if changed:  # one document holds one set of settings: a resumed run is the same run
                raise UserError(f"--resume continues {run_dir} with its stored settings; {', '.join(changed)} "
                                "differ — drop those options, or start a new run with another --output-dir")
            base = kept.model_dump(exclude_unset=True)
    settings = validate_data(RunSettings, {**base, **overrides}, "run settings")
    if settings.data_dir is None and os.environ.get("CASA_EVAL_DATA_DIR"):
        settings.data_dir = Path(os.environ["CASA_EVAL_DATA_DIR"])
    if settings.data_dir is not None:
        os.environ["CASA_EVAL_DATA_DIR"] = str(settings.data_dir.resolve())
    validate_names(settings, resume=resume)  # before any progress bar is drawn
    from casa_eval.cli.verify_cmd import warn_unverified

    warn_unverified(settings.models or [], settings.checkpoints, settings.device)
    streaming = _streaming_step(settings)
    default_location = settings.output_dir is None
    run_id = new_run_id()
    if default_location:
        settings.output_dir = default_output_dir(run_id)

    with make_progress() as progress:
        reporter = ProgressReporter(progress, settings.limit)
        try:
            results, out = execute_run(settings, run_id=run_id, resume=resume, reporter=reporter,
                                       on_start=lambda out: _link_latest(out, default_location),
                                       after_accuracy=None if streaming is None else streaming(progress))
        except KeyboardInterrupt:
            progress.stop()
            error(f"interrupted; finished samples are kept in {settings.output_dir}. Continue with: "
                  f"casa-eval run --resume --output-dir {settings.output_dir}")
            raise typer.Exit(130) from None
    report = _write_report(results, out)
    _print_summary(results)
    if results.efficiency is not None:
        from casa_eval.cli.profile_cmd import print_profile_summary

        print_profile_summary(results.efficiency)
    say(f"results: [bold]{escape(str(out / 'results.json'))}[/]"
        + (f"  report: [bold]{escape(str(report))}[/]" if report else ""))


def _write_report(results: Any, out: Path) -> Path | None:
    """The HTML report next to the results (a failure here never loses the results)."""
    from casa_eval.report import build_report

    try:
        path = build_report([out], out / "report.html")
    except Exception as exc:  # the results are already saved; say why the report is missing
        error(f"the run finished but its report could not be written: {exc}")
        return None
    results.files["report"] = path.name
    results.save(out)
    return path


def _streaming_step(settings: Any) -> Any:
    """The profile step of the run (None when `profile` is None), validated before anything runs."""
    if settings.profile is None:
        return None
    from casa_eval.profiling.document import add_profile, profile_model_names
    from casa_eval.profiling.profile_config import resolve_profile_config

    profile = resolve_profile_config(settings.profile)
    names = profile_model_names(profile, settings.models)

    def step(progress: Any) -> Any:
        def run_profile(results: Any, out: Path) -> None:
            from casa_eval.cli.profile_cmd import ProfileProgress
            from casa_eval.profiling.runner import TURN_JOURNAL
            from casa_eval.profiling.video import demo_video

            video = settings.video or demo_video()
            add_profile(results, out, profile, names, reporter=ProfileProgress(progress), video=video,
                        device=settings.device if settings.device != "auto" else None,
                        checkpoints=settings.checkpoints, seed=settings.seed,
                        trust_remote_code=settings.trust_remote_code,
                        cross_attention_cache=settings.cross_attention_cache, journal=out / TURN_JOURNAL)
            results.save(out)

        return run_profile

    return step


def _latest_run() -> Path:
    """The run `reports/latest` points to (the last run started in the default location)."""
    latest = Path("reports") / "latest"
    if not latest.exists():
        raise UserError("--resume needs --output-dir (no reports/latest run found)")
    return latest.resolve()


def _link_latest(out: Path, default_location: bool) -> None:
    if not default_location:
        return
    link = out.parent / "latest"
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(out.name)


def _print_summary(results: Any) -> None:
    if results.lab is not None:
        print_lab_summary(results.lab)
    lab_tasks = {c.task for c in results.lab.cells} if results.lab is not None else set()
    tasks = [t for t in dict.fromkeys(r.task for r in results.accuracy) if t not in lab_tasks]
    if not tasks:
        return
    rows = table("model", *tasks, title="accuracy (mean ± standard error)")
    models = list(dict.fromkeys(r.model for r in results.accuracy))
    for model in models:
        cells = []
        for task in tasks:
            found = [r for r in results.accuracy if r.model == model and r.task == task]
            primary = found[0] if found else None
            if primary is None:
                cells.append("—")
            else:
                se = f" ± {primary.stderr:.3f}" if primary.stderr is not None else ""
                cells.append(f"{primary.metric} {primary.value:.3f}{se} (n={primary.n})")
        rows.add_row(model, *cells)
    console.print(rows)


def print_lab_summary(lab: Any) -> None:
    """Trained mechanisms x lab tasks: accuracy with its 95 % interval, then what CASA closes of the gap."""
    tasks = list(dict.fromkeys(c.task for c in lab.cells))
    models = list(dict.fromkeys(c.model for c in lab.cells))
    cells = {(c.model, c.task): c for c in lab.cells}
    seeds = max(len(c.seeds) for c in lab.cells)
    over = f"over {seeds} training seeds" if seeds > 1 else "over the test items"
    rows = table("model", *(t.removeprefix("lab_") for t in tasks), title=f"lab accuracy (± 95 % interval {over})")
    for model in models:
        row = []
        for task in tasks:
            c = cells.get((model, task))
            if c is None:
                row.append("—")
                continue
            low, high = (c.seed_ci_low, c.seed_ci_high) if c.seed_ci_low is not None else (c.item_ci_low,
                                                                                          c.item_ci_high)
            row.append(f"{c.accuracy:.2f}±{(high - low) / 2:.2f}")
        rows.add_row(model, *row)
    console.print(rows)
    say(f"chance: {lab.cells[0].chance:.3f} on every task; fine_1..fine_4: glyphs of 6, 4, 3, 2 px (docs/lab.md)")
    for g in lab.gap_closed:
        if g.model.startswith("lab-casa") and g.task.startswith("lab_fine"):
            value = "undefined (insertion and cross-attention within 0.05)" if g.fraction is None else \
                f"{g.fraction:.2f} [{g.ci_low:.2f}, {g.ci_high:.2f}]"
            say(f"gap closed by {g.model} on {g.task}: {value}")
