"""A baseline from another machine: efficiency ratios refused (exit 2) by default, or skipped with the reason
when the thresholds say `other_hardware: skip` — accuracy is judged either way. And the committed CI
baseline stays a baseline this code can read and that passes against itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from casa_eval.check import Run, Thresholds, exit_code, run_checks
from casa_eval.check.junit import write_junit
from tests.clitools import REPO, casa_eval

RULES = {"accuracy_drop": [{"model": "lab-casa", "task": "lab_coarse", "metric": "accuracy"}],
         "efficiency_ratio": [{"model": "*", "metric": "kv_bytes_last10pct", "max_ratio": 1.0}]}


def _other_machine(default_run: Path, tmp_path: Path) -> Path:
    other = Path(shutil.copytree(default_run, tmp_path / "other-machine"))
    data = json.loads((other / "results.json").read_text())
    data["environment"].update(fingerprint="0000000000000000", cpu="Some Other CPU")
    (other / "results.json").write_text(json.dumps(data))
    return other


def test_ratios_against_other_hardware_are_refused_or_skipped_as_the_thresholds_say(default_run: Path,
                                                                                  tmp_path: Path) -> None:
    other = Run.load(_other_machine(default_run, tmp_path))
    refused = run_checks(Run.load(default_run), Thresholds.model_validate(RULES), other)
    assert exit_code(refused) == 2
    assert {c.verdict for c in refused if c.kind == "efficiency_ratio"} == {"invalid"}

    skipping = run_checks(Run.load(default_run), Thresholds.model_validate({**RULES, "other_hardware": "skip"}), other)
    ratios = [c for c in skipping if c.kind == "efficiency_ratio"]
    assert ratios and {c.verdict for c in ratios} == {"skip"}
    assert "different hardware/environment" in ratios[0].detail and "skipped" in ratios[0].detail
    assert [c.verdict for c in skipping if c.kind == "accuracy_drop"] == ["pass"]  # still judged
    assert exit_code(skipping) == 0
    junit = tmp_path / "checks.xml"
    write_junit(skipping, junit)
    assert junit.read_text().count("<skipped ") == len(ratios)


def test_a_different_profile_is_not_skipped(default_run: Path, tmp_path: Path) -> None:
    other = _other_machine(default_run, tmp_path)
    data = json.loads((other / "results.json").read_text())
    data["efficiency"]["profile_config"]["scenario"]["turns"] += 1
    (other / "results.json").write_text(json.dumps(data))
    same_machine = json.loads((default_run / "results.json").read_text())["environment"]
    data["environment"] = same_machine
    (other / "results.json").write_text(json.dumps(data))
    checks = run_checks(Run.load(default_run), Thresholds.model_validate({**RULES, "other_hardware": "skip"}),
                        Run.load(other))
    assert {c.verdict for c in checks if c.kind == "efficiency_ratio"} == {"invalid"}
    assert exit_code(checks) == 2


def test_the_committed_ci_baseline_passes_against_itself(data_cache: Path) -> None:
    baseline = REPO / "reports" / "ci-baseline"
    result = casa_eval("check", str(baseline), "--baseline", str(baseline), "--thresholds",
                       str(REPO / "reports" / "baseline-thresholds.yaml"), cache=data_cache)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "regressed" in result.stdout and " 0 regressed, 0 invalid" in result.stdout
