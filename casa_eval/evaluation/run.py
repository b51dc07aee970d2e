"""`casa-eval run`: every model on every task through lmms-eval, one results document per run.

The run directory holds::

    results.json                 the results document (rewritten atomically after every model x task)
    predictions.jsonl            every finished generation, appended as batches finish (the resume journal)
    samples/MODEL__TASK.jsonl    scored per-sample records, written when a model x task completes
    lmms_eval.log                lmms-eval's own log
    turns.partial.jsonl          every finished streaming turn, appended as it finishes (the profile's journal)
    turns.csv                    the streaming profile's per-turn records, written when it completes

Resuming skips finished model x task pairs and, inside an unfinished one, every prediction already in the
journal, so each sample ends up scored exactly once; an interrupted streaming profile keeps its journaled
turns and measures only the missing ones.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from casa_eval.errors import UserError
from casa_eval.evaluation.preflight import check_task_data, check_video, check_writable
from casa_eval.registry import resolve_model, resolve_tasks, safe_filename, trained_models
from casa_eval.results.schema import (
    RESULTS_FILE,
    MetricResult,
    ModelRecord,
    RunConfigRecord,
    RunResults,
    RunStatus,
    load_results,
)

DEFAULT_TASKS = ("lab_fine_1", "lab_fine_2", "lab_fine_3", "lab_fine_4", "lab_coarse", "lab_recall")
DEFAULT_PROFILE = "lab-stream"
SETTINGS_FILE = "run_settings.json"


class RunSettings(BaseModel):
    """What to run. Also the schema of `casa-eval run --config FILE` (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=list, description="model names; empty = every trained lab model "
                              "(the shipped ones, or those under `trained`)")
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS))
    limit: int | None = Field(None, ge=1, description="documents per task (None = all)")
    trained: Path | None = Field(None, description="a `casa-eval train` output directory: its checkpoints are the "
                                 "lab-* models (default: the ones shipped with casa-eval)")
    batch_size: int = Field(8, ge=1)
    device: str = "auto"
    seed: int = 0
    output_dir: Path | None = None
    zoo: dict[str, Any] = Field(default_factory=dict, description="FusionConfig fields shared by zoo models")
    checkpoints: dict[str, Path] = Field(default_factory=dict, description="model name -> checkpoint directory")
    include_paths: list[Path] = Field(default_factory=list, description="extra lmms-eval task directories")
    profile: str | None = Field(DEFAULT_PROFILE, description="streaming profile run after the accuracy evaluation "
                                "(a name or a YAML path; None to skip)")
    trust_remote_code: bool = Field(False, description="allow checkpoints that ship their own modeling code")
    data_dir: Path | None = Field(None, description="offline dataset snapshots (`casa-eval data pull`)")
    cross_attention_cache: Literal["latest", "append", "replace"] = Field(
        "latest", description="mllama: the latest run of images' cross-attention K/V (the model's semantics), "
                              "every image's (transformers' cache) or only the latest image's")
    video: Path | None = Field(None, description="video streamed by the profile (default: a synthesised clip)")


class RunReporter(Protocol):
    """How the run tells its caller what it is doing (the CLI draws progress bars from it)."""

    def stage(self, message: str) -> None: ...
    def task_started(self, model: str, task: str) -> None: ...
    def advance(self, done: int) -> None: ...
    def task_finished(self, model: str, task: str, metrics: list[MetricResult]) -> None: ...


class SilentReporter:
    def stage(self, message: str) -> None:
        pass

    def task_started(self, model: str, task: str) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def task_finished(self, model: str, task: str, metrics: list[MetricResult]) -> None:
        pass


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def default_output_dir(run_id: str) -> Path:
    return Path("reports") / f"run-{run_id}"


def resolve_trained(settings: RunSettings) -> None:
    """Fill in the trained lab models: every one found when no models are named, and the checkpoint directory
    of each `lab-*` model named (from `settings.trained`, or the checkpoints shipped with casa-eval)."""
    if settings.trained is not None and not settings.trained.is_dir():
        raise UserError(f"--trained {settings.trained} is not a directory")
    found = trained_models(settings.trained)
    if settings.trained is not None and not found:
        raise UserError(f"--trained {settings.trained} holds no trained checkpoints (seed<k>/lab-<mechanism>/)")
    if not settings.models:
        settings.models = list(found)
    for name in settings.models:
        if name.startswith("lab-") and name not in settings.checkpoints:
            if name not in found:
                where = settings.trained or "the checkpoints shipped with casa-eval"
                raise UserError(f"no trained checkpoint for {name} in {where}; trained models there: "
                                f"{', '.join(found) or '(none)'}")
            settings.checkpoints[name] = found[name][1]


def validate_names(settings: RunSettings, *, resume: bool = False) -> None:
    """Every model and task exists, the output directory is writable (and holds no other run), every model's
    weights and every task's data are at hand, and the zoo dimensions are valid — cheapest checks first, so a
    typo fails in a second. Missing pieces (weights, data, the remote-code flag) are reported together, one
    line each."""
    resolve_trained(settings)
    if not settings.models:
        raise UserError("no models given")
    if not settings.tasks:
        raise UserError("no tasks given")
    entries = [resolve_model(name) for name in settings.models]
    unknown = [n for n in settings.checkpoints if n not in settings.models]
    if unknown:
        raise UserError(f"checkpoints given for models that are not run: {', '.join(unknown)}")
    for path in settings.include_paths:
        if not path.is_dir():
            raise UserError(f"task include path {path} is not a directory")
    resolve_tasks(settings.tasks, extra=settings.include_paths)
    if settings.output_dir is not None:
        check_writable(settings.output_dir)
        check_run_dir(settings.output_dir, resume)
    check_video(settings.video)
    from casa_eval.models.availability import model_problems

    problems = [p for entry in entries for p in model_problems(
        entry, None if entry.name not in settings.checkpoints else str(settings.checkpoints[entry.name]),
        trust_remote_code=settings.trust_remote_code)]
    problems += [p for task in resolve_tasks(settings.tasks, extra=settings.include_paths)
                 if (p := check_task_data(task)) is not None]
    if problems:
        raise UserError(problems)
    from casa_eval.models.zoo_settings import zoo_config

    for entry in entries:
        if entry.is_zoo and entry.name not in settings.checkpoints:
            zoo_config(entry, settings.zoo, seed=settings.seed)  # model dimensions are valid


def check_run_dir(out: Path, resume: bool) -> None:
    """A new run needs a directory without results; `--resume` needs one with them."""
    if (out / RESULTS_FILE).exists() and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --output-dir")
    if resume and not (out / RESULTS_FILE).exists():
        raise UserError(f"nothing to resume in {out} (no {RESULTS_FILE})")


def execute_run(settings: RunSettings, *, run_id: str | None = None, resume: bool = False,
                reporter: RunReporter | None = None,
                on_start: Callable[[Path], None] | None = None,
                after_accuracy: Callable[[RunResults, Path], None] | None = None) -> tuple[RunResults, Path]:
    """Run the accuracy evaluation, then `after_accuracy` (the streaming profile when the CLI runs it), and
    return the document. The settings are stored in the run directory (`run_settings.json`) so `--resume`
    can reuse them."""
    reporter = reporter or SilentReporter()
    if settings.data_dir is not None:  # read by the tasks' data hooks inside lmms-eval
        from casa_eval.data.snapshots import DATA_DIR_ENV

        os.environ[DATA_DIR_ENV] = str(settings.data_dir.resolve())
    validate_names(settings, resume=resume)
    run_id = run_id or new_run_id()
    out = settings.output_dir or default_output_dir(run_id)
    check_writable(out)
    check_run_dir(out, resume)
    tasks = resolve_tasks(settings.tasks, extra=settings.include_paths)
    results = _open_results(out, run_id, settings, resume)
    if not resume:  # a new run: streaming turns journaled by an earlier one here are not its own
        from casa_eval.profiling.runner import TURN_JOURNAL

        (out / TURN_JOURNAL).unlink(missing_ok=True)
    (out / SETTINGS_FILE).write_text(settings.model_dump_json(indent=2, exclude={"output_dir"}) + "\n")
    if on_start is not None:
        on_start(out)

    from casa_eval.evaluation.lmms_bridge import evaluate_task, load_lmms_eval, task_manager
    from casa_eval.models.adapter import CasaEvalLMM
    from casa_eval.models.journal import PredictionJournal
    from casa_eval.models.loading import load_model

    results.files["predictions"] = "predictions.jsonl"
    results.status.state = "running"
    results.save(out)  # from here on an interruption leaves a run that --resume continues
    try:
        reporter.stage("loading lmms-eval")
        load_lmms_eval(out / "lmms_eval.log")
        manager = task_manager(settings.include_paths)
        journal = PredictionJournal(out / "predictions.jsonl")
        for name in settings.models:
            todo = [t for t in tasks if f"{name}|{t.name}" not in results.status.finished]
            if not todo:
                continue
            reporter.stage(f"loading {name}")
            loaded = load_model(name, checkpoint=settings.checkpoints.get(name), zoo=settings.zoo,
                                seed=settings.seed, device=settings.device,
                                trust_remote_code=settings.trust_remote_code,
                                cross_attention_cache=settings.cross_attention_cache)
            _record_model(results, ModelRecord(**loaded.record))
            adapter = CasaEvalLMM(loaded=loaded, batch_size=settings.batch_size, journal=journal)
            adapter.progress = reporter.advance
            for task in todo:
                reporter.task_started(name, task.name)
                outcome = evaluate_task(adapter, task.name, manager, limit=settings.limit,
                                        batch_size=settings.batch_size, seed=settings.seed, output_path=out)
                metrics = _store_task(results, out, name, task.name, outcome)
                results.save(out)
                reporter.task_finished(name, task.name, metrics)
        from casa_eval.results.lab import lab_section

        results.lab = lab_section(results, out)
        results.save(out)
        if after_accuracy is not None and results.efficiency is None:
            after_accuracy(results, out)
    except KeyboardInterrupt:
        results.status.state = "interrupted"
        results.save(out)
        raise
    except BaseException as exc:
        results.status.state = "failed"
        results.status.errors.append(f"{type(exc).__name__}: {exc}")
        results.save(out)
        raise
    results.status.state = "complete"
    results.finished_utc = datetime.now(UTC)
    results.save(out)
    return results, out


def _open_results(out: Path, run_id: str, settings: RunSettings, resume: bool) -> RunResults:
    from casa_eval.results.provenance import code_revision, environment

    if resume:
        previous = load_results(out)
        previous.status.errors.clear()
        return previous
    from casa_eval.models.loading import resolve_device

    device = str(resolve_device(settings.device))
    config = RunConfigRecord(models=[], tasks=[], limit=settings.limit, batch_size=settings.batch_size,
                             device=device, seed=settings.seed,
                             seeds={"random": settings.seed, "numpy": settings.seed, "torch": settings.seed,
                                    "fewshot": settings.seed})
    return RunResults(run_id=run_id, started_utc=datetime.now(UTC), status=RunStatus(state="running"),
                      code=code_revision(), environment=environment(device), config=config)


def _record_model(results: RunResults, record: ModelRecord) -> None:
    results.config.models = [m for m in results.config.models if m.name != record.name] + [record]


def _store_task(results: RunResults, out: Path, model: str, task: str, outcome: Any) -> list[MetricResult]:
    from casa_eval.evaluation.samples import (
        metric_names,
        metric_results,
        sample_records,
        task_record,
        write_jsonl_atomic,
    )

    metrics = metric_names(outcome.config)
    records = sample_records(model, task, outcome.samples, metrics)
    relative = f"samples/{safe_filename(model)}__{safe_filename(task)}.jsonl"
    write_jsonl_atomic(out / relative, records)
    results.files[f"samples:{model}|{task}"] = relative
    if all(t.name != task for t in results.config.tasks):
        results.config.tasks.append(task_record(task, outcome.config, outcome.samples, outcome.num_docs))
    found = metric_results(model, task, records, metrics, outcome.results)
    results.accuracy = [r for r in results.accuracy if not (r.model == model and r.task == task)] + found
    results.status.finished.append(f"{model}|{task}")
    return found
