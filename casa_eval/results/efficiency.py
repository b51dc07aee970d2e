"""The efficiency section of the results document: per-turn records and per-model summaries of a
streaming profile (see docs/profiling.md for the method)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from casa_eval.results.record import ResultRecord


class VerificationRecord(ResultRecord):
    """Whether a real checkpoint passed `casa-eval verify` on this machine (its latest verdict there)."""

    status: Literal["passed", "failed", "unverified"]
    verified_utc: datetime | None = None
    dtype: str | None = Field(None, description="dtype the verdict was reached in")
    device: str | None = None
    casa_eval_version: str | None = None
    failed_checks: list[str] = Field(default_factory=list)


class ModelRecord(ResultRecord):
    """What was built for a model name (also used by the accuracy section of the run config)."""

    name: str
    mechanism: str
    source: str
    checkpoint: str | None
    weights_sha256: str | None
    dtype: str
    attention_backend: str
    backbone_attention: str | None = Field(None, description="transformers' attention implementation of the "
                                                             "backbone (zoo models: matched to the fusion's)")
    parameters: int
    added_parameters: int | None = Field(description="parameters the mechanism adds to a shared backbone "
                                                     "(zoo models; None for real checkpoints)")
    image_tokens: int
    kv_bytes_per_token: int | None = Field(None, description="backbone KV-cache bytes per cached token")
    cache_tokens_per_image: int | None = Field(None, description="backbone cache tokens one image adds")
    config: dict[str, Any]
    training: dict[str, Any] | None = Field(None, description="the checkpoint's training record (casa-eval train: "
                                            "loss per step, seed, steps, wall time, parameter counts), if any")
    verification: VerificationRecord | None = Field(None, description="real checkpoints: the latest "
                                                    "`casa-eval verify` verdict for these weights on this machine")


class TurnRecord(ResultRecord):
    """One model x repeat x turn. Times in ms, memory in bytes, energy in J; None where not measured."""

    model: str
    repeat: int
    turn: int
    ttft_ms: float | None
    decode_ms_per_token: float | None
    turn_ms: float | None
    prompt_tokens: int | None
    generated_tokens: int | None
    kv_tokens: int | None
    kv_bytes: int | None
    analytic_kv_bytes: int | None
    side_state_tokens: int | None
    side_state_bytes: int | None
    analytic_side_state_bytes: int | None
    rss_bytes: int | None
    peak_rss_bytes: int | None
    gpu_allocated_bytes: int | None = None
    gpu_peak_allocated_bytes: int | None = None
    gpu_peak_reserved_bytes: int | None = None
    nvml_process_bytes: int | None = None
    nvml_device_bytes: int | None = None
    gpu_sm_clock_min_mhz: int | None = Field(None, description="lowest GPU SM clock sampled during the turn (NVML)")
    energy_j: float | None = None
    realtime_headroom: float | None = None
    oom: bool = False


class Slope(ResultRecord):
    """Least-squares slope against the turn index with a 95 % bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    unit: str


class ModelEfficiency(ResultRecord):
    model: str
    mechanism: str
    added_parameters: int | None
    image_tokens: int
    turns_requested: int
    turns_completed: int
    repeats: int
    oom_turn: int | None = Field(description="first turn that ran out of memory (None: never)")
    first: dict[str, float] = Field(description="medians over the first 10 % of turns (and repeats)")
    last: dict[str, float] = Field(description="medians over the last 10 % of turns (and repeats)")
    ratio_to_floor_first: float | None = Field(description="median turn_ms / text-only turn_ms, first 10 %")
    ratio_to_floor_last: float | None
    slopes: dict[str, Slope]
    peak_memory_bytes: int | None
    kv_bytes_match_analytic: bool
    turns_before_oom: dict[str, int | None] = Field(description="GPU size (GiB) -> projected turns")
    energy_j_per_turn: float | None
    realtime_headroom: float | None = Field(description="frame interval / median turn time, last 10 %")
    kyutai: dict[str, Any] | None = Field(None, description="with the Kyutai loop: speed_bench_streaming.py's "
                                          "summary (means over the first/last max(1, n // 10) turns)")


class Crossover(ResultRecord):
    model: str
    baseline: str
    metric: str
    turn: int | None = Field(description="first turn from which the model stays cheaper (measured medians)")
    turn_fit: float | None = Field(description="intersection of the two fitted lines")


class EfficiencySection(ResultRecord):
    profile: str
    model_records: list[ModelRecord] = Field(default_factory=list, description="the models profiled, as built")
    profile_config: dict[str, Any]
    device: str
    schedule: str = Field(description="interleaved (models take turns) or sequential (one model after another)")
    loop: str = Field("casa-eval", description="the turn loop: casa-eval's own or Kyutai's (speed_bench_streaming.py)")
    video: str | None
    models: list[ModelEfficiency]
    crossovers: list[Crossover]
    turns_file: str
    records: list[TurnRecord]
