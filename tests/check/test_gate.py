"""`casa-eval check`: exit 0 on a run against itself, 1 past a tightened threshold, 2 on a malformed
thresholds file and on a baseline from other hardware — through the real command."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from casa_eval.check import Run, Thresholds, exit_code, run_checks
from tests.clitools import REPO, casa_eval

FULL = """
version: 1
absolute:
  - {section: accuracy, model: "lab-*", metric: "*", min: 0.0, max: 1.0}
  - {section: efficiency, model: lab-casa, metric: kv_bytes_last10pct, max: 5000000}
accuracy_drop:
  - {model: "*", task: "*", metric: "*", tolerance: 0.0, z: 1.96}
efficiency_ratio:
  - {model: "*", metric: turn_ms_last10pct, max_ratio: 1.10}
  - {model: "*", metric: kv_bytes_last10pct, max_ratio: 1.05}
invariants:
  - {check: kv_bytes_match_analytic}
  - {check: kv_growth_matches_mechanism}
  - {check: accuracy_matches_lmms_eval}
"""


def _thresholds(tmp_path: Path, text: str = FULL) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    return path


def test_run_against_itself_passes(default_run: Path, tmp_path: Path, data_cache: Path) -> None:
    junit = tmp_path / "checks.xml"
    result = casa_eval("check", str(default_run), "--baseline", str(default_run), "--thresholds",
                       str(_thresholds(tmp_path)), "--junit", str(junit), cache=data_cache)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "check passed" in result.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", 0)) > 40
    assert suite.get("failures") == "0" and suite.get("errors") == "0"


def test_tightened_threshold_is_a_regression(default_run: Path, tmp_path: Path, data_cache: Path) -> None:
    casa_kv = [c for c in run_checks(Run.load(default_run), Thresholds.model_validate(
        {"absolute": [{"section": "efficiency", "model": "lab-casa", "metric": "kv_bytes_last10pct", "min": 0}]}))]
    measured = float(casa_kv[0].value)
    tight = FULL.replace("max: 5000000", f"max: {measured - 1}")
    junit = tmp_path / "checks.xml"
    result = casa_eval("check", str(default_run), "--baseline", str(default_run), "--thresholds",
                       str(_thresholds(tmp_path, tight)), "--junit", str(junit), cache=data_cache)
    assert result.returncode == 1
    assert "regression" in result.stdout
    messages = [f.get("message") or "" for f in ET.parse(junit).getroot().iter("failure")]
    assert len(messages) == 1 and messages[0].startswith(f"value {measured:.6g}")


@pytest.mark.parametrize(("text", "message"), [
    ("version: 1\nabsolute: [{metric: anls, min: 0.5\n", "malformed YAML"),
    ("version: 1\nabsolut: []\n", "absolut: Extra inputs are not permitted"),
    ("version: 1\nabsolute: [{metric: anls}]\n", "needs min or max"),
])
def test_malformed_thresholds_exit_2(default_run: Path, tmp_path: Path, data_cache: Path, text: str,
                                     message: str) -> None:
    result = casa_eval("check", str(default_run), "--thresholds", str(_thresholds(tmp_path, text)),
                       cache=data_cache)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("columns", [80, 250])
def test_baseline_from_other_hardware_is_not_comparable(default_run: Path, tmp_path: Path, data_cache: Path,
                                                        columns: int) -> None:
    """The reason is printed whole on one line, whatever the width, naming both machines."""
    other = tmp_path / "other-machine"
    shutil.copytree(default_run, other)
    data = json.loads((other / "results.json").read_text())
    data["environment"]["fingerprint"] = "0000000000000000"
    data["environment"]["cpu"] = "Some Other CPU"
    (other / "results.json").write_text(json.dumps(data))
    ours = json.loads((default_run / "results.json").read_text())["environment"]["cpu"]
    result = casa_eval("check", str(default_run), "--baseline", str(other), "--thresholds",
                       str(_thresholds(tmp_path)), cache=data_cache, columns=columns)
    assert result.returncode == 2
    reasons = [line for line in result.stdout.splitlines() if "not comparable: different hardware" in line]
    assert len(reasons) == 1, result.stdout
    assert f"({ours}, cpu vs Some Other CPU, cpu)" in reasons[0]


def test_paired_accuracy_drop_is_judged_against_noise(default_run: Path, tmp_path: Path) -> None:
    """A candidate that loses every sample of a metric fails; a tolerance larger than the drop passes."""
    base = tmp_path / "baseline"
    shutil.copytree(default_run, base)
    # the candidate loses every sample of lab-casa on lab_coarse that the baseline got right
    candidate = tmp_path / "candidate"
    shutil.copytree(default_run, candidate)
    samples = candidate / "samples" / "lab-casa__lab_coarse.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sum(r["scores"]["accuracy"] for r in records) >= 2  # the trained model gets them right
    for r in records:
        r["scores"]["accuracy"] = 0.0
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    rule = {"model": "lab-casa", "task": "lab_coarse", "metric": "accuracy"}
    strict = run_checks(Run.load(candidate), Thresholds.model_validate({"accuracy_drop": [rule]}), Run.load(base))
    assert exit_code(strict) == 1 and strict[0].verdict == "fail"
    lenient = run_checks(Run.load(candidate), Thresholds.model_validate(
        {"accuracy_drop": [{**rule, "tolerance": 1.0}]}), Run.load(base))
    assert exit_code(lenient) == 0


def test_invariants_catch_a_cache_that_does_not_match(default_run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(default_run, broken)
    data = json.loads((broken / "results.json").read_text())
    for record in data["efficiency"]["records"]:
        if record["model"] == "lab-casa" and record["turn"] == 5 and record["kv_bytes"] is not None:
            record["kv_bytes"] += 2048  # as if an image token had leaked into CASA's backbone cache
    (broken / "results.json").write_text(json.dumps(data))
    checks = run_checks(Run.load(broken), Thresholds.model_validate(
        {"invariants": [{"check": "kv_bytes_match_analytic"}, {"check": "kv_growth_matches_mechanism",
                                                               "model": "lab-casa"}]}))
    assert [c.verdict for c in checks] == ["fail", "fail"]
    assert "lab-casa#0:5" in checks[0].detail


def test_rule_matching_nothing_is_invalid(default_run: Path) -> None:
    checks = run_checks(Run.load(default_run), Thresholds.model_validate(
        {"absolute": [{"model": "lab-casaa", "metric": "accuracy", "min": 0}]}))
    assert exit_code(checks) == 2 and checks[0].detail == "the rule matches nothing"


def test_committed_ci_thresholds_are_valid() -> None:
    from casa_eval.config import load_yaml_model

    load_yaml_model(REPO / "reports" / "thresholds.yaml", Thresholds)
