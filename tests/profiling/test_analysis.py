"""Summaries from per-turn records: windows, slopes with intervals, crossover, OOM projection."""

from __future__ import annotations

import numpy as np
import pytest

from casa_eval.profiling.analysis import crossover, fit_slope, per_turn, turns_before_oom, window
from casa_eval.profiling.profile_config import parse_bytes


def _records(values: list[list[float]], metric: str = "turn_ms", **extra: float) -> list[dict]:
    return [{"turn": t, "repeat": r, "oom": False, metric: v, **extra}
            for r, series in enumerate(values) for t, v in enumerate(series)]


def test_per_turn_median_over_repeats_and_windows() -> None:
    records = _records([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [3, 2, 3, 4, 5, 6, 7, 8, 9, 30]])
    series = per_turn(records, "turn_ms")
    assert series[0] == 2 and series[-1] == 20
    assert window(series, "first") == 2 and window(series, "last") == 20


def test_slope_recovers_a_known_line_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    turns = np.arange(100)
    records = _records([list(3.0 + 0.5 * turns + rng.normal(0, 0.2, 100)) for _ in range(3)])
    slope = fit_slope(records, "turn_ms", "ms/turn")
    assert slope is not None and slope.unit == "ms/turn"
    assert slope.ci_low < 0.5 < slope.ci_high and slope.value == pytest.approx(0.5, abs=0.01)
    flat = fit_slope(_records([[5.0] * 50]), "turn_ms", "ms/turn")
    assert flat is not None and flat.value == pytest.approx(0.0)


def test_crossover_of_a_flat_and_a_growing_series() -> None:
    flat, growing = np.full(50, 10.0), 4.0 + 0.5 * np.arange(50)  # cross at turn 12
    result = crossover("casa", flat, "insertion", growing, "turn_ms")
    assert result.turn == 13 and result.turn_fit == pytest.approx(12.0)
    never = crossover("casa", growing, "insertion", flat, "turn_ms")
    assert never.turn is None


def test_turns_before_oom_projection() -> None:
    records = [{"turn": t, "repeat": 0, "oom": False, "analytic_kv_bytes": 1000 * (t + 1), "kv_bytes": 1000 * (t + 1),
                "side_state_bytes": 500} for t in range(5)]
    projected = turns_before_oom(records, weights_bytes=2**30, memory_gib=[2, 1])
    assert projected == {"2": (2**31 - 2**30 - 500) // 1000, "1": 0}


def test_parse_bytes() -> None:
    assert parse_bytes("40GiB") == 40 * 2**30 and parse_bytes("512MB") == 512 * 10**6 and parse_bytes(7) == 7
    with pytest.raises(ValueError, match="cannot read memory size"):
        parse_bytes("lots")
