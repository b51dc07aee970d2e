"""From per-turn records to summaries: medians over repeats, first/last-10 % windows, slopes with bootstrap
intervals, the crossover turn against a baseline, and the analytic turns-before-OOM projection."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from casa_eval.results.efficiency import Crossover, ModelEfficiency, Slope

WINDOW_METRICS = ("ttft_ms", "decode_ms_per_token", "turn_ms", "kv_tokens", "kv_bytes", "side_state_bytes")
GIB = 2**30


def per_turn(records: Sequence[dict[str, Any]], metric: str) -> np.ndarray:
    """[turns] median over repeats of `metric` (NaN where no repeat measured that turn)."""
    good = [r for r in records if not r["oom"] and r.get(metric) is not None]
    if not good:
        return np.full(0, np.nan)
    turns = max(r["turn"] for r in good) + 1
    values: list[list[float]] = [[] for _ in range(turns)]
    for r in good:
        values[r["turn"]].append(float(r[metric]))
    return np.array([np.median(v) if v else np.nan for v in values])


def window_turns(n: int, which: str, fraction: float = 0.1) -> range:
    """The turns of the first or last `fraction` of n turns (at least one)."""
    k = max(1, math.ceil(n * fraction))
    return range(k) if which == "first" else range(n - k, n)


def window(series: np.ndarray, which: str, fraction: float = 0.1) -> float:
    """Median of the first or last `fraction` of a per-turn series (at least one turn)."""
    chosen = window_turns(len(series), which, fraction)
    part = series[chosen.start:chosen.stop]
    part = part[~np.isnan(part)]
    return float(np.median(part)) if part.size else float("nan")


def fit_slope(records: Sequence[dict[str, Any]], metric: str, unit: str, *, resamples: int = 1000,
              seed: int = 0, skip_first: int = 0) -> Slope | None:
    """OLS slope of `metric` against the turn index over every (repeat, turn) point, with a 95 % bootstrap
    interval from resampling the points."""
    pts = np.array([(r["turn"], float(r[metric])) for r in records
                    if not r["oom"] and r.get(metric) is not None and r["turn"] >= skip_first], dtype=float)
    if len(pts) < 3 or np.ptp(pts[:, 0]) == 0:
        return None
    value = _ols(pts[:, 0], pts[:, 1])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pts), size=(resamples, len(pts)))
    x, y = pts[idx, 0], pts[idx, 1]
    xm, ym = x.mean(1, keepdims=True), y.mean(1, keepdims=True)
    denom = ((x - xm) ** 2).sum(1)
    slopes = np.where(denom > 0, ((x - xm) * (y - ym)).sum(1) / np.where(denom > 0, denom, 1), np.nan)
    low, high = np.nanquantile(slopes, [0.025, 0.975])
    return Slope(value=value, ci_low=float(low), ci_high=float(high), unit=unit)


def _ols(x: np.ndarray, y: np.ndarray) -> float:
    xm = x - x.mean()
    return float((xm * (y - y.mean())).sum() / (xm**2).sum())


def _line(series: np.ndarray) -> tuple[float, float] | None:
    ok = ~np.isnan(series)
    if ok.sum() < 2:
        return None
    slope, intercept = np.polyfit(np.arange(len(series))[ok], series[ok], 1)
    return float(slope), float(intercept)


def crossover(model: str, model_series: np.ndarray, baseline: str, baseline_series: np.ndarray,
              metric: str, smooth: int = 5) -> Crossover:
    """First turn from which `model` stays cheaper than `baseline` (on rolling medians of `smooth` turns),
    and where their fitted lines cross (None when they never do within the sign of the data)."""
    n = min(len(model_series), len(baseline_series))
    a, b = _rolling_median(model_series[:n], smooth), _rolling_median(baseline_series[:n], smooth)
    cheaper = a < b
    turn = None
    for t in range(n):
        if cheaper[t:].all():
            turn = t
            break
    fit = None
    la, lb = _line(model_series[:n]), _line(baseline_series[:n])
    if la and lb and la[0] != lb[0]:
        x = (la[1] - lb[1]) / (lb[0] - la[0])
        fit = float(x) if x >= 0 else 0.0 if la[1] < lb[1] else None
    return Crossover(model=model, baseline=baseline, metric=metric, turn=turn, turn_fit=fit)


def _rolling_median(series: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return series
    out = np.empty_like(series)
    for i in range(len(series)):
        part = series[max(0, i - k // 2): i + k // 2 + 1]
        part = part[~np.isnan(part)]
        out[i] = np.median(part) if part.size else np.nan
    return out


def turns_before_oom(records: Sequence[dict[str, Any]], *, weights_bytes: int, memory_gib: Sequence[float],
                     ) -> dict[str, int | None]:
    """Turns a conversation fits in `memory_gib` of accelerator memory: (memory - weights - side state -
    activation overhead) / backbone KV bytes added per turn (from the analytic KV size, so it is exact).
    The overhead is measured on GPU (peak reserved - weights - state at the first turn), 0 on CPU."""
    good = [r for r in records if not r["oom"] and r.get("analytic_kv_bytes") is not None and r["repeat"] == 0]
    if len(good) < 2:
        return {f"{g:g}": None for g in memory_gib}
    kv = np.array([r["analytic_kv_bytes"] for r in good], dtype=float)
    growth = float(np.diff(kv[1:]).mean()) if len(kv) > 2 else float(kv[1] - kv[0])
    side = max(r["side_state_bytes"] or 0 for r in good)
    first = good[0]
    overhead = 0
    if first.get("gpu_peak_reserved_bytes"):
        overhead = max(0, first["gpu_peak_reserved_bytes"] - weights_bytes - (first["kv_bytes"] or 0) - side)
    out: dict[str, int | None] = {}
    for gib in memory_gib:
        room = gib * GIB - weights_bytes - side - overhead
        out[f"{gib:g}"] = None if growth <= 0 else max(0, int(room // growth))
    return out


def floor_ratios(records: Sequence[dict[str, Any]], floor_records: Sequence[dict[str, Any]],
                 ) -> tuple[float | None, float | None]:
    """Median of turn_ms / floor turn_ms (per turn, medians over repeats) in the first and last 10 %."""
    ours, floor = per_turn(records, "turn_ms"), per_turn(floor_records, "turn_ms")
    n = min(len(ours), len(floor))
    if n == 0:
        return None, None
    ratio = ours[:n] / floor[:n]
    return _finite_or_none(window(ratio, "first")), _finite_or_none(window(ratio, "last"))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summarize(name: str, record: dict[str, Any], records: Sequence[dict[str, Any]], *, turns: int, repeats: int,
              weights_bytes: int, memory_gib: Sequence[float]) -> ModelEfficiency:
    """A model's summary (ratios to the text-only floor are filled by the caller, see `floor_ratios`)."""
    series = {m: per_turn(records, m) for m in WINDOW_METRICS}
    oom = [r["turn"] for r in records if r["oom"]]
    completed = max((r["turn"] + 1 for r in records if not r["oom"]), default=0)
    memory_metric = "gpu_peak_reserved_bytes" if any(r.get("gpu_peak_reserved_bytes") for r in records) \
        else "peak_rss_bytes"
    slopes = {k: s for k, s in {
        "turn_ms": fit_slope(records, "turn_ms", "ms/turn"),
        "ttft_ms": fit_slope(records, "ttft_ms", "ms/turn"),
        "decode_ms_per_token": fit_slope(records, "decode_ms_per_token", "ms/token/turn"),
        "kv_bytes": fit_slope(records, "kv_bytes", "bytes/turn"),
        memory_metric: fit_slope(records, memory_metric, "bytes/turn"),
    }.items() if s is not None}
    peaks = [r[memory_metric] for r in records if r.get(memory_metric)]
    kv_ok = all(r["kv_bytes"] == r["analytic_kv_bytes"] and r["side_state_bytes"] == r["analytic_side_state_bytes"]
                for r in records if not r["oom"])
    energy = [r["energy_j"] for r in records if not r["oom"] and r.get("energy_j") is not None]
    turn_ms_last = window(series["turn_ms"], "last") if len(series["turn_ms"]) else float("nan")
    fps_budget_ms = next((r["turn_ms"] * r["realtime_headroom"] for r in records
                          if r.get("realtime_headroom") and r.get("turn_ms")), None)
    return ModelEfficiency(
        model=name, mechanism=record["mechanism"], added_parameters=record["added_parameters"],
        image_tokens=record["image_tokens"], turns_requested=turns, turns_completed=completed, repeats=repeats,
        oom_turn=min(oom) if oom else None,
        first={m: v for m, s in series.items() if len(s) and math.isfinite(v := window(s, "first"))},
        last={m: v for m, s in series.items() if len(s) and math.isfinite(v := window(s, "last"))},
        ratio_to_floor_first=None, ratio_to_floor_last=None, slopes=slopes,
        peak_memory_bytes=int(max(peaks)) if peaks else None, kv_bytes_match_analytic=kv_ok,
        turns_before_oom=turns_before_oom(records, weights_bytes=weights_bytes, memory_gib=memory_gib),
        energy_j_per_turn=float(np.median(energy)) if energy else None,
        realtime_headroom=(fps_budget_ms / turn_ms_last) if fps_budget_ms and turn_ms_last > 0 else None,
    )
