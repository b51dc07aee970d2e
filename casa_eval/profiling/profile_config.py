"""Streaming-profile scenarios (`profiles/*.yaml`), validated with unknown keys rejected.

A profile fixes the workload (frames, prompt, tokens per turn, turns, warm-up, repeats), the zoo models'
dimensions (the same backbone, vision tower and fusion placement for every mechanism it runs), numerics,
the attention backend and an optional memory budget. `sweep` expands one model into variants (e.g. the
Q-Former with Q in {32, 64, 128, 256}).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from casa_eval.config import load_yaml_model, validation_message
from casa_eval.errors import UserError
from casa_eval.registry import resolve_profile


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scenario(_Strict):
    """The fixed streaming workload: every turn = one frame, a prompt, exactly `tokens_per_turn` tokens."""

    fps: float = Field(2.0, gt=0, description="frames per second of the stream (sets the real-time budget)")
    tokens_per_turn: int = Field(16, ge=1, description="generated tokens per turn (min = max, greedy, no EOS)")
    prompt: str = Field("Describe the frame.", description="user text sent with every frame")
    visual_tokens: int | None = Field(None, gt=0, description="visual tokens per frame (a perfect square)")
    image_size: int | None = Field(None, gt=0, description="frame side in pixels (alternative to visual_tokens)")
    turns: int = Field(32, ge=1)
    warmup_turns: int = Field(2, ge=0, description="turns of a discarded warm-up session")
    repeats: int = Field(3, ge=1, description="measured sessions; summaries use the median over repeats")


MemoryBudget = str | float | int


class ProfileConfig(_Strict):
    name: str = ""
    description: str = ""
    models: list[str] = Field(default_factory=lambda: ["zoo-text-only", "zoo-casa", "zoo-insertion"])
    scenario: Scenario = Field(default_factory=Scenario)
    model: dict[str, Any] = Field(default_factory=dict, description="zoo FusionConfig fields (no mechanism)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attention_backend: Literal["auto", "sdpa", "flex", "flash", "dense"] = "auto"
    device: str = "auto"
    schedule: Literal["auto", "interleaved", "sequential"] = Field(
        "auto", description="interleaved: turn t of every model back to back, so slow drifts of the machine hit "
                            "all models alike (CPU default); sequential: one model after another, needed for "
                            "per-model peak memory and energy (GPU default)")
    memory_budget: MemoryBudget | None = Field(
        None, description="GPU: fraction of device memory per process (0-1) or bytes ('40GiB'); "
                          "CPU: bytes of conversation state (KV cache + side state)")
    project_memory_gib: list[float] = Field(default_factory=lambda: [80.0],
                                            description="GPU sizes for the analytic turns-before-OOM projection")
    sweep: dict[str, list[Any]] = Field(default_factory=dict,
                                        description="model field -> values; expands every swept model")
    sweep_models: list[str] = Field(default_factory=lambda: ["zoo-qformer"])

    @field_validator("model")
    @classmethod
    def _no_mechanism(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "mechanism" in value:
            raise ValueError("set mechanisms with `models`, not model.mechanism")
        return value

    @field_validator("memory_budget")
    @classmethod
    def _readable_budget(cls, value: MemoryBudget | None) -> MemoryBudget | None:
        if value is not None:
            parse_bytes(value)  # a budget that cannot be read fails when the file is read, not at run time
        return value

    @model_validator(mode="after")
    def _one_size(self) -> ProfileConfig:
        if self.scenario.visual_tokens and self.scenario.image_size:
            raise ValueError("give scenario.visual_tokens or scenario.image_size, not both")
        return self

    @model_validator(mode="after")
    def _valid_zoo_models(self) -> ProfileConfig:
        """The zoo dimensions (and every sweep combination) make valid models: checked when the file is read,
        not when the first model loads."""
        from pydantic import ValidationError

        from casa_eval.fusion._config import FusionConfig

        dims = self.zoo_dimensions()
        keys = list(self.sweep)
        for values in itertools.product(*(self.sweep[k] for k in keys)):
            try:
                FusionConfig.model_validate({**dims, **dict(zip(keys, values, strict=True)), "mechanism": "text_only"})
            except ValidationError as exc:
                raise ValueError(validation_message("model", exc)) from None
        return self

    def zoo_dimensions(self) -> dict[str, Any]:
        """The zoo FusionConfig fields, with the vision tower sized for the scenario's frames."""
        dims = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.model.items()}
        raw = dims.get("vision", {})
        if not isinstance(raw, dict):
            raise ValueError("model.vision must be a mapping of vision tower fields")
        vision = dict(raw)
        scenario = self.scenario
        if scenario.visual_tokens:
            side = math.isqrt(scenario.visual_tokens)
            if side * side != scenario.visual_tokens:
                raise ValueError("scenario.visual_tokens must be a perfect square")
            vision["image_size"] = side * vision.get("patch_size", 8) * vision.get("merge", 1)
        elif scenario.image_size:
            vision["image_size"] = scenario.image_size
        if vision:
            dims["vision"] = vision
        dims["dtype"] = self.dtype
        dims["attention_backend"] = self.attention_backend
        return dims

    def budget_bytes(self) -> int | None:
        return None if self.memory_budget is None else parse_bytes(self.memory_budget)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(value: MemoryBudget) -> int:
    """'40GiB' / '512MB' / 1e9 -> bytes. Numbers <= 1 are fractions (returned as-is by `budget_fraction`)."""
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read memory size {value!r} (use e.g. 512MiB, 40GiB, 0.5)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def load_profile(path: Path) -> ProfileConfig:
    profile = load_yaml_model(path, ProfileConfig)
    return profile if profile.name else profile.model_copy(update={"name": path.stem})


def resolve_profile_config(name_or_path: str, *, memory_budget: str | None = None) -> ProfileConfig:
    profile = load_profile(resolve_profile(name_or_path))
    if memory_budget is not None:
        try:
            value: Any = float(memory_budget) if memory_budget.replace(".", "", 1).isdigit() else memory_budget
            parse_bytes(value)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        profile = profile.model_copy(update={"memory_budget": value})
    return profile
