"""`casa-eval profile`: stream the same workload through every model and measure each turn.

Per model: a discarded warm-up session, then `repeats` measured sessions of `turns` turns; an
out-of-memory turn (a real `torch.OutOfMemoryError` on GPU, the state budget on CPU) is recorded and the
next model runs. Models are loaded one at a time and freed before the next.
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

from casa_eval.errors import UserError
from casa_eval.models.loading import LoadedModel, load_model, resolve_device
from casa_eval.profiling.analysis import crossover, floor_ratios, per_turn, summarize
from casa_eval.profiling.clocks import TurnClock
from casa_eval.profiling.energy import EnergyMeter
from casa_eval.profiling.memory import MemorySampler
from casa_eval.profiling.profile_config import ProfileConfig
from casa_eval.profiling.session_loop import SessionContext, run_session
from casa_eval.profiling.video import read_frames, synthetic_frames
from casa_eval.results.efficiency import Crossover, EfficiencySection, ModelEfficiency, ModelRecord, TurnRecord

FLOOR = "zoo-text-only"
TURNS_FILE = "turns.csv"


class ProfileReporter(Protocol):
    def stage(self, message: str) -> None: ...
    def model_started(self, name: str, total_turns: int) -> None: ...
    def turn_done(self) -> None: ...
    def model_finished(self, summary: ModelEfficiency) -> None: ...


class SilentProfileReporter:
    def stage(self, message: str) -> None:
        pass

    def model_started(self, name: str, total_turns: int) -> None:
        pass

    def turn_done(self) -> None:
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
    dims = {k: (dict(v) if isinstance(v, dict) else v) for k, v in profile.model.items()}
    vision = dict(dims.get("vision", {}))
    scenario = profile.scenario
    if scenario.visual_tokens:
        side = math.isqrt(scenario.visual_tokens)
        if side * side != scenario.visual_tokens:
            raise UserError(f"profile {profile.name}: scenario.visual_tokens must be a perfect square")
        vision["image_size"] = side * vision.get("patch_size", 8) * vision.get("merge", 1)
    elif scenario.image_size:
        vision["image_size"] = scenario.image_size
    if vision:
        dims["vision"] = vision
    dims["dtype"] = profile.dtype
    dims["attention_backend"] = profile.attention_backend
    return dims


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
    if not video.is_file():
        raise UserError(f"video {video} does not exist")
    try:
        frames = list(itertools.islice(read_frames(video, fps=profile.scenario.fps, size=image_size), turns))
    except Exception as exc:  # PyAV raises its own error types for unreadable files
        raise UserError(f"cannot decode video {video}: {exc}") from None
    if not frames:
        raise UserError(f"video {video} has no frames")
    return frames


def profile_models(profile: ProfileConfig, names: list[str], *, turns: int | None = None,
                   repeats: int | None = None, video: Path | None = None, device: str | None = None,
                   checkpoints: dict[str, Path] | None = None, seed: int = 0,
                   reporter: ProfileReporter | None = None,
                   loader: Callable[..., LoadedModel] = load_model) -> EfficiencySection:
    """Run the profile for every model and return the efficiency section (records, summaries, models)."""
    reporter = reporter or SilentProfileReporter()
    scenario = profile.scenario
    turns = turns or scenario.turns
    repeats = repeats or scenario.repeats
    target = resolve_device(device or profile.device)
    dims = zoo_dimensions(profile)
    variants = expand_models(profile, names)
    records: list[dict[str, Any]] = []
    summaries: list[ModelEfficiency] = []
    model_records: list[ModelRecord] = []
    frames: list[np.ndarray] | None = None
    with MemorySampler(target) as sampler:
        for variant in variants:
            reporter.stage(f"loading {variant.name}")
            loaded = loader(variant.base, checkpoint=(checkpoints or {}).get(variant.base),
                            zoo={**dims, **variant.zoo}, seed=seed, device=str(target))
            if frames is None:
                frames = profile_frames(profile, loaded.model.config.vision.image_size, video, turns)
            measured = _profile_one(loaded, variant.name, profile, frames, turns, repeats, target, sampler,
                                    reporter)
            weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
            summary = summarize(variant.name, loaded.record, measured, turns=turns, repeats=repeats,
                                weights_bytes=weights, memory_gib=profile.project_memory_gib)
            summaries.append(summary)
            records.extend(measured)
            model_records.append(ModelRecord(**{**loaded.record, "name": variant.name}))
            reporter.model_finished(summary)
            del loaded
            gc.collect()
            if target.type == "cuda":
                torch.cuda.empty_cache()
    summaries = _with_floor_ratios(summaries, records)
    return EfficiencySection(
        profile=profile.name, model_records=model_records, profile_config=profile.model_dump(mode="json"),
        device=str(target),
        video=None if video is None else str(video), models=summaries,
        crossovers=_crossovers(summaries, records), turns_file=TURNS_FILE,
        records=[TurnRecord.model_validate(_finite(r)) for r in records])


def _profile_one(loaded: LoadedModel, name: str, profile: ProfileConfig, frames: list[np.ndarray], turns: int,
                 repeats: int, device: torch.device, sampler: MemorySampler,
                 reporter: ProfileReporter) -> list[dict[str, Any]]:
    scenario = profile.scenario
    budget = profile.budget_bytes() if profile.memory_budget is not None else None
    state_budget = None
    if budget is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        fraction = float(profile.memory_budget) if isinstance(profile.memory_budget, (int, float)) and \
            float(profile.memory_budget) <= 1 else budget / total
        torch.cuda.set_per_process_memory_fraction(min(fraction, 1.0), device)
    elif budget is not None:
        state_budget = budget
    ctx = SessionContext(model=loaded.model, tokenizer=loaded.model.tokenizer, prompt_format=loaded.prompt_format,
                         device=device, clock=TurnClock(device), sampler=sampler, energy=EnergyMeter(device),
                         state_budget_bytes=state_budget)
    def session(repeat: int, count: int, on_turn: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        return run_session(ctx, name=name, repeat=repeat, turns=count, frames=frames, prompt=scenario.prompt,
                           tokens_per_turn=scenario.tokens_per_turn, fps=scenario.fps, on_turn=on_turn)

    out: list[dict[str, Any]] = []
    try:
        if scenario.warmup_turns:
            reporter.stage(f"warming up {name}")
            session(-1, scenario.warmup_turns)  # discarded
        reporter.model_started(name, turns * repeats)
        for repeat in range(repeats):
            session_records = session(repeat, turns, reporter.turn_done)
            out.extend(session_records)
            if session_records and session_records[-1]["oom"]:
                break  # every repeat would run out at the same turn: record it once, move to the next model
    finally:
        if budget is not None and device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    return out


def _with_floor_ratios(summaries: list[ModelEfficiency], records: list[dict[str, Any]]) -> list[ModelEfficiency]:
    """Every model's turn time relative to the text-only floor (when the floor was profiled)."""
    floor_rows = [r for r in records if r["model"] == FLOOR]
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
