"""The gate tells noise from regression: efficiency ratios are judged on the per-turn measurements (an interval,
not two medians), accuracy drops on n paired samples with Student's t, and slopes take no ratio rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from casa_eval.check import Run, Thresholds, exit_code, run_checks
from casa_eval.profiling.analysis import per_turn, window, window_turns

MODEL = "lab-casa"
RATIO = {"efficiency_ratio": [{"model": MODEL, "metric": "turn_ms_last10pct", "max_ratio": 1.10}]}


def _with_last_turns(default_run: Path, tmp_path: Path, name: str, values: list[float]) -> Path:
    """A copy of the run whose MODEL measured `values` (ms) in the turns of its last 10 % window, with its
    summary recomputed from them as the profiler does."""
    run = Path(shutil.copytree(default_run, tmp_path / name))
    data = json.loads((run / "results.json").read_text())
    records = [r for r in data["efficiency"]["records"] if r["model"] == MODEL]
    turns = max(r["turn"] for r in records) + 1
    last = [r for r in records if r["turn"] in window_turns(turns, "last")]
    assert len(last) == len(values), "the fixture's window holds another number of turns"
    for record, value in zip(last, values, strict=True):
        record["turn_ms"] = value
    summary = next(m for m in data["efficiency"]["models"] if m["model"] == MODEL)
    summary["last"]["turn_ms"] = window(per_turn(records, "turn_ms"), "last")
    (run / "results.json").write_text(json.dumps(data))
    return run


def _ratio_check(candidate: Path, baseline: Path):  # type: ignore[no-untyped-def]
    checks = run_checks(Run.load(candidate), Thresholds.model_validate(RATIO), Run.load(baseline))
    (check,) = [c for c in checks if c.kind == "efficiency_ratio"]
    return check, exit_code(checks)


def test_noise_that_crosses_a_naive_median_threshold_passes(default_run: Path, tmp_path: Path) -> None:
    baseline = _with_last_turns(default_run, tmp_path, "baseline", [100.0, 100.0, 100.0, 100.0])
    noisy = _with_last_turns(default_run, tmp_path, "noisy", [95.0, 105.0, 130.0, 140.0])
    check, code = _ratio_check(noisy, baseline)
    naive = float(check.value.split("x")[0])
    assert naive > 1.10  # two medians alone would call this a regression
    low = float(check.value.split("[")[1].split(",")[0])
    assert low <= 1.10 and check.verdict == "pass" and code == 0


def test_a_shift_beyond_the_noise_fails_with_its_interval(default_run: Path, tmp_path: Path) -> None:
    baseline = _with_last_turns(default_run, tmp_path, "baseline", [95.0, 105.0, 100.0, 102.0])
    slower = _with_last_turns(default_run, tmp_path, "slower", [150.0, 160.0, 155.0, 152.0])
    check, code = _ratio_check(slower, baseline)
    low, high = (float(v) for v in check.value.split("[")[1].split("]")[0].split(","))
    assert 1.10 < low < high and check.verdict == "fail" and code == 1
    assert check.detail == "the whole 95 % interval of the ratio is above 1.1"


def test_a_value_without_per_turn_records_is_judged_by_its_ratio(default_run: Path, tmp_path: Path) -> None:
    """Peak memory is one number per run: its ratio is the verdict (both ways)."""
    rule = {"efficiency_ratio": [{"model": MODEL, "metric": "peak_memory_bytes", "max_ratio": 1.0}]}
    same = run_checks(Run.load(default_run), Thresholds.model_validate(rule), Run.load(default_run))
    assert [c.verdict for c in same] == ["pass"] and same[0].value.startswith("1.000x (")
    bigger = Path(shutil.copytree(default_run, tmp_path / "bigger"))
    data = json.loads((bigger / "results.json").read_text())
    next(m for m in data["efficiency"]["models"] if m["model"] == MODEL)["peak_memory_bytes"] *= 2
    (bigger / "results.json").write_text(json.dumps(data))
    worse = run_checks(Run.load(bigger), Thresholds.model_validate(rule), Run.load(default_run))
    assert [c.verdict for c in worse] == ["fail"] and worse[0].value.startswith("2.000x (")


def test_ratio_rules_on_slopes_are_refused() -> None:
    with pytest.raises(ValidationError, match="bound the slope with an absolute rule"):
        Thresholds.model_validate({"efficiency_ratio": [{"metric": "turn_ms_slope", "max_ratio": 1.1}]})
    wildcard = Thresholds.model_validate({"efficiency_ratio": [{"metric": "*", "max_ratio": 1.1}]})
    assert wildcard.efficiency_ratio[0].metric == "*"  # a pattern skips the slopes it matches


def test_a_small_sample_accuracy_drop_uses_t_not_z(default_run: Path, tmp_path: Path) -> None:
    """n = 3 paired drops of 0.1, 0.5, 0.3: mean 0.3, SE 0.115, t = 2.6 — past z 1.96 (a normal quantile
    would fail it) but within Student's t with 2 degrees of freedom (4.30): noise at n = 3."""
    candidate = Path(shutil.copytree(default_run, tmp_path / "candidate"))
    samples = candidate / "samples" / "lab-insertion__lab_coarse.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [r["scores"]["accuracy"] for r in records] == [1.0, 1.0, 1.0]
    for record, drop in zip(records, [0.1, 0.5, 0.3], strict=True):
        record["scores"]["accuracy"] -= drop
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    rule = {"accuracy_drop": [{"model": "lab-insertion", "task": "lab_coarse", "metric": "accuracy", "z": 1.96}]}
    checks = run_checks(Run.load(candidate), Thresholds.model_validate(rule), Run.load(default_run))
    assert [c.verdict for c in checks] == ["pass"] and checks[0].threshold == "<= 0.4969"
    clear = {"accuracy_drop": [{**rule["accuracy_drop"][0], "z": 1.0}]}  # t(2) at 68 %: 1.32 x SE = 0.152
    assert [c.verdict for c in run_checks(Run.load(candidate), Thresholds.model_validate(clear),
                                          Run.load(default_run))] == ["fail"]
