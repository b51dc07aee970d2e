"""`casa-eval profile`: stream the same workload through every model and measure each turn.

Per model: a discarded warm-up session, then `repeats` measured sessions of `turns` turns; an
out-of-memory turn (a real `torch.OutOfMemoryError` on GPU, the state budget on CPU) is recorded and that
model stops while the others go on. Each finished turn is appended to a journal (`turns.partial.jsonl`) as
it finishes; a profile started again on the same journal keeps those turns and measures only the missing
ones — an interrupted session is replayed unmeasured up to where it stopped (greedy decoding on the same
inputs reaches the same state), then measured again from there. Two schedules:

* interleaved (CPU default): all models are loaded and take turns — turn t of every model runs back to
  back — so slow drifts of a shared machine hit every mechanism alike and ratios stay honest;
* sequential (GPU default): one model after another, loaded alone, so peak memory and NVML energy belong
  to that model only.
"""

from __future__ import annotations

import gc
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import ValidationError

from casa_eval.errors import UserError
from casa_eval.evaluation.preflight import check_video
from casa_eval.models.loading import LoadedModel, load_model, resolve_device
from casa_eval.profiling.analysis import crossover, floor_ratios, per_turn, summarize
from casa_eval.profiling.clocks import TurnClock
from casa_eval.profiling.energy import EnergyMeter
from casa_eval.profiling.kyutai_loop import KyutaiTurnRunner, kyutai_statistics
from casa_eval.profiling.memory import MemorySampler
from casa_eval.profiling.profile_config import ProfileConfig
from casa_eval.profiling.session_loop import SessionContext, TurnRunner, Workload
from casa_eval.profiling.video import read_frames, synthetic_frames
from casa_eval.results.append_log import AppendLog
from casa_eval.results.efficiency import Crossover, EfficiencySection, ModelEfficiency, ModelRecord, TurnRecord

FLOOR = "zoo-text-only"
TURNS_FILE = "turns.csv"
TURN_JOURNAL = "turns.partial.jsonl"  # every finished turn, appended as it finishes (the resume journal)


class ProfileReporter(Protocol):
    def stage(self, message: str) -> None: ...
    def model_started(self, name: str, total_turns: int) -> None: ...
    def turn_done(self, name: str) -> None: ...
    def model_finished(self, summary: ModelEfficiency) -> None: ...


class SilentProfileReporter:
    def stage(self, message: str) -> None:
        pass

    def model_started(self, name: str, total_turns: int) -> None:
        pass

    def turn_done(self, name: str) -> None:
        pass

    def model_finished(self, summary: ModelEfficiency) -> None:
        pass


@dataclass
class ModelVariant:
    name: str  # e.g. "zoo-qformer[qformer_queries=64]"
    base: str  # the registry name
    zoo: dict[str, Any] = field(default_factory=dict)


def zoo_dimensions(profile: ProfileConfig) -> dict[str, Any]:
    """The profile's zoo FusionConfig fields, with the vision tower sized for the scenario's frames."""
    return profile.zoo_dimensions()


def expand_models(profile: ProfileConfig, names: list[str]) -> list[ModelVariant]:
    """Registry names -> variants; models named in `sweep_models` get one variant per sweep combination."""
    out = []
    keys = list(profile.sweep)
    for name in names:
        if keys and name in profile.sweep_models:
            for values in itertools.product(*(profile.sweep[k] for k in keys)):
                label = ",".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
                out.append(ModelVariant(f"{name}[{label}]", name, dict(zip(keys, values, strict=True))))
        else:
            out.append(ModelVariant(name, name))
    return out


def profile_frames(profile: ProfileConfig, image_size: int, video: Path | None, turns: int) -> list[np.ndarray]:
    if video is None:
        return synthetic_frames(min(turns, 64), image_size)
    check_video(video)
    try:
        frames = list(itertools.islice(read_frames(video, fps=profile.scenario.fps, size=image_size), turns))
    except Exception as exc:  # PyAV raises its own error types for unreadable files
        raise UserError(f"cannot decode video {video}: {exc}") from None
    if not frames:
        raise UserError(f"video {video} has no frames")
    return frames


def resolve_schedule(schedule: str, device: torch.device) -> str:
    if schedule != "auto":
        return schedule
    return "sequential" if device.type == "cuda" else "interleaved"


@dataclass
class _Prepared:
    """A loaded model variant with its measurement context."""

    variant: ModelVariant
    loaded: LoadedModel
    ctx: SessionContext
    gpu_fraction: float | None


def profile_models(profile: ProfileConfig, names: list[str], *, turns: int | None = None,
                   repeats: int | None = None, video: Path | None = None, device: str | None = None,
                   checkpoints: dict[str, Path] | None = None, seed: int = 0,
                   reporter: ProfileReporter | None = None, trust_remote_code: bool = False,
                   cross_attention_cache: str = "latest", journal: Path | None = None, loop: str = "casa-eval",
                   loader: Callable[..., LoadedModel] = load_model) -> EfficiencySection:
    """Run the profile for every model and return the efficiency section (records, summaries, models).
    With `journal`, turns already in it are kept and every newly finished turn is appended to it. `loop`:
    casa-eval's turn loop or Kyutai's (`kyutai_loop.py`)."""
    runner_class = KyutaiTurnRunner if loop == "kyutai" else TurnRunner
    reporter = reporter or SilentProfileReporter()
    turns = turns or profile.scenario.turns
    repeats = repeats or profile.scenario.repeats
    log = AppendLog(journal) if journal is not None else None
    done = _journaled(log, turns, repeats) if log is not None else {}
    target = resolve_device(device or profile.device)
    schedule = resolve_schedule(profile.schedule, target)
    dims = zoo_dimensions(profile)
    variants = expand_models(profile, names)
    records: dict[str, list[dict[str, Any]]] = {}
    summaries: list[ModelEfficiency] = []
    model_records: list[ModelRecord] = []
    workload: Workload | None = None

    def prepare(variant: ModelVariant) -> _Prepared:
        nonlocal workload
        reporter.stage(f"loading {variant.name}")
        loaded = loader(variant.base, checkpoint=(checkpoints or {}).get(variant.base),
                        zoo={**dims, **variant.zoo}, seed=seed, device=str(target),
                        trust_remote_code=trust_remote_code, cross_attention_cache=cross_attention_cache)
        if workload is None:
            frames = profile_frames(profile, loaded.model.frame_size, video, turns)
            workload = Workload(frames=frames, prompt=profile.scenario.prompt,
                                tokens_per_turn=profile.scenario.tokens_per_turn, fps=profile.scenario.fps)
        return _prepared(loaded, variant, profile, target, sampler, energy=schedule == "sequential")

    def finish(prepared: _Prepared) -> None:
        name = prepared.variant.name
        weights = prepared.loaded.weight_bytes
        summary = summarize(name, prepared.loaded.record, records[name], turns=turns, repeats=repeats,
                            weights_bytes=weights, memory_gib=profile.project_memory_gib)
        if loop == "kyutai":
            summary = summary.model_copy(update={"kyutai": kyutai_statistics(records[name])})
        summaries.append(summary)
        model_records.append(ModelRecord(**{**prepared.loaded.record, "name": name}))
        reporter.model_finished(summary)

    with MemorySampler(target) as sampler:
        groups = [[v] for v in variants] if schedule == "sequential" else [variants]
        for group in groups:
            prepared = [prepare(v) for v in group]
            assert workload is not None
            records.update(_measure(prepared, workload, turns, repeats, profile.scenario.warmup_turns, reporter,
                                    done=done, save=log.append if log is not None else None,
                                    runner_class=runner_class))
            for p in prepared:
                finish(p)
            del prepared
            gc.collect()
            if target.type == "cuda":
                torch.cuda.empty_cache()
    flat = [r for v in variants for r in records[v.name]]
    summaries = _with_floor_ratios(summaries, flat)
    ran = profile.model_copy(update={"scenario": profile.scenario.model_copy(update={"turns": turns,
                                                                                     "repeats": repeats})})
    return EfficiencySection(
        profile=profile.name, model_records=model_records, profile_config=ran.model_dump(mode="json"),
        device=str(target), schedule=schedule, loop=loop, video=None if video is None else str(video), models=summaries,
        crossovers=_crossovers(summaries, flat), turns_file=TURNS_FILE,
        records=[TurnRecord.model_validate(_finite(r)) for r in flat])


def _prepared(loaded: LoadedModel, variant: ModelVariant, profile: ProfileConfig, device: torch.device,
              sampler: MemorySampler, *, energy: bool) -> _Prepared:
    budget = profile.budget_bytes() if profile.memory_budget is not None else None
    fraction = state_budget = None
    if budget is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        value = profile.memory_budget
        fraction = float(value) if isinstance(value, (int, float)) and float(value) <= 1 else budget / total
    elif budget is not None:
        state_budget = budget
    ctx = SessionContext(model=loaded.model, tokenizer=loaded.model.tokenizer, prompt_format=loaded.prompt_format,
                         device=device, clock=TurnClock(device), sampler=sampler,
                         energy=EnergyMeter(device) if energy else None, state_budget_bytes=state_budget)
    return _Prepared(variant=variant, loaded=loaded, ctx=ctx, gpu_fraction=fraction)


def _journaled(log: AppendLog, turns: int, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """The journal's turns per model, in (repeat, turn) order, each once; a journal written with other
    turns or repeats is not this profile's."""
    by_model: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for record in log.read():
        try:
            record = TurnRecord.model_validate(record).model_dump()
        except ValidationError:
            continue  # a damaged line: that turn is measured again
        if record["repeat"] >= repeats or record["turn"] >= turns:
            raise UserError(f"{log.path}: turn {record['turn']} of repeat {record['repeat']} does not fit "
                            f"{turns} turns x {repeats} repeats; this journal belongs to another profile")
        by_model.setdefault(record["model"], {})[(record["repeat"], record["turn"])] = record
    return {name: [rows[k] for k in sorted(rows)] for name, rows in by_model.items()}


def _measure(prepared: list[_Prepared], workload: Workload, turns: int, repeats: int, warmup_turns: int,
             reporter: ProfileReporter, *, done: dict[str, list[dict[str, Any]]] | None = None,
             save: Callable[[list[dict[str, Any]]], None] | None = None,
             runner_class: type[TurnRunner] = TurnRunner) -> dict[str, list[dict[str, Any]]]:
    """Warm every model up (discarded), then `repeats` sessions of `turns` turns; within a repeat the models
    take turns (one model alone = the sequential schedule). A model that runs out of memory stops there.
    Turns in `done` are kept, not measured again; every new record goes to `save` as soon as it exists."""
    done = done or {}
    out: dict[str, list[dict[str, Any]]] = {p.variant.name: list(done.get(p.variant.name, [])) for p in prepared}
    finished = {(r["model"], r["repeat"], r["turn"]) for rows in out.values() for r in rows}
    stopped = {r["model"] for rows in out.values() for r in rows if r["oom"]}
    complete = {name for name, rows in out.items() if len(rows) == turns * repeats} | stopped
    if len({p.gpu_fraction for p in prepared}) == 1 and prepared[0].gpu_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(min(prepared[0].gpu_fraction, 1.0), prepared[0].ctx.device)
    try:
        for p in prepared:
            if warmup_turns and p.variant.name not in complete:
                reporter.stage(f"warming up {p.variant.name}")
                warm = runner_class(p.ctx, workload, name=p.variant.name, repeat=-1)
                for _ in range(warmup_turns):
                    if warm.step()["oom"]:
                        break
                warm.close()
        for p in prepared:
            reporter.model_started(p.variant.name, turns * repeats)
            for _ in out[p.variant.name]:
                reporter.turn_done(p.variant.name)
        for repeat in range(repeats):
            pending = [p for p in prepared if p.variant.name not in stopped
                       and any((p.variant.name, repeat, t) not in finished for t in range(turns))]
            runners = [runner_class(p.ctx, workload, name=p.variant.name, repeat=repeat) for p in pending]
            for turn in range(turns):
                for runner in runners:
                    if runner.done:
                        continue
                    if (runner.name, repeat, turn) in finished:
                        runner.step()  # replayed unmeasured: the session reaches the state it had
                        continue
                    record = runner.step()
                    if save is not None:
                        save([_finite(record)])
                    out[runner.name].append(record)
                    if record["oom"]:
                        stopped.add(runner.name)  # every repeat would run out at the same turn
                    else:
                        reporter.turn_done(runner.name)
            for runner in runners:
                runner.close()
        for rows in out.values():
            rows.sort(key=lambda r: (r["repeat"], r["turn"]))
    finally:
        if prepared[0].gpu_fraction is not None:
            torch.cuda.set_per_process_memory_fraction(1.0, prepared[0].ctx.device)
    return out


def _with_floor_ratios(summaries: list[ModelEfficiency], records: list[dict[str, Any]]) -> list[ModelEfficiency]:
    """Every model's turn time relative to the text-only floor (when the floor was profiled)."""
    floors = [s.model for s in summaries if s.mechanism == "text_only"]
    floor_rows = [r for r in records if r["model"] == (floors[0] if floors else FLOOR)]
    if not floor_rows:
        return summaries
    out = []
    for s in summaries:
        first, last = floor_ratios([r for r in records if r["model"] == s.model], floor_rows)
        out.append(s.model_copy(update={"ratio_to_floor_first": first, "ratio_to_floor_last": last}))
    return out


def _crossovers(summaries: list[ModelEfficiency], records: list[dict[str, Any]]) -> list[Crossover]:
    """Where each non-inserting mechanism becomes cheaper than the insertion baseline."""
    baselines = [s.model for s in summaries if s.mechanism == "insertion"]
    if not baselines:
        return []
    base = baselines[0]
    out = []
    for s in summaries:
        if s.mechanism in ("insertion", "text_only"):
            continue
        for metric in ("turn_ms", "decode_ms_per_token"):
            ours = per_turn([r for r in records if r["model"] == s.model], metric)
            theirs = per_turn([r for r in records if r["model"] == base], metric)
            if len(ours) and len(theirs):
                out.append(crossover(s.model, ours, base, theirs, metric))
    return out


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
