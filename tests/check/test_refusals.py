"""What is not a verdict: the gate refuses it with exit 2 and the reason, even when a rule also regressed;
and a bug in the gate gets its own exit code, never read as a regression."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from casa_eval.check import Run, Thresholds, exit_code, run_checks
from tests.clitools import casa_eval

A_FAILING_RULE = {"absolute": [{"model": "lab-insertion", "task": "lab_coarse", "metric": "accuracy", "min": 1.1}]}


def _copy(default_run: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(default_run, tmp_path / name))


def _edit(run: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((run / "results.json").read_text())
    change(data)
    (run / "results.json").write_text(json.dumps(data))


def test_a_thresholds_file_without_rules_is_refused(default_run: Path, tmp_path: Path, data_cache: Path) -> None:
    empty = tmp_path / "thresholds.yaml"
    empty.write_text("version: 1\n")
    result = casa_eval("check", str(default_run), "--thresholds", str(empty), cache=data_cache)
    assert result.returncode == 2, result.stdout
    assert "the thresholds file holds no rules, so nothing would be checked" in result.stdout


@pytest.mark.parametrize(("role", "state"), [("candidate", "interrupted"), ("candidate", "failed"),
                                              ("baseline", "interrupted")])
def test_an_unfinished_run_is_refused_even_when_a_rule_fails(default_run: Path, tmp_path: Path, role: str,
                                                             state: str) -> None:
    unfinished = _copy(default_run, tmp_path, "unfinished")
    _edit(unfinished, lambda data: data["status"].update(state=state))
    candidate, baseline = (unfinished, default_run) if role == "candidate" else (default_run, unfinished)
    checks = run_checks(Run.load(candidate), Thresholds.model_validate(A_FAILING_RULE), Run.load(baseline))
    assert any(c.verdict == "fail" for c in checks)
    refused = [c for c in checks if c.kind == "run"]
    assert len(refused) == 1 and f"the {role} run is {state}, not complete" in refused[0].detail
    assert f"casa-eval run --resume {unfinished}" in refused[0].detail
    assert exit_code(checks) == 2


def test_a_baseline_cell_missing_from_the_candidate_is_refused(default_run: Path, tmp_path: Path,
                                                               data_cache: Path) -> None:
    candidate = _copy(default_run, tmp_path, "candidate")
    _edit(candidate, lambda data: data.update(accuracy=[r for r in data["accuracy"] if r["task"] != "lab_recall"]))
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("version: 1\naccuracy_drop:\n  - {model: 'lab-*', metric: accuracy}\n")
    result = casa_eval("check", str(candidate), "--baseline", str(default_run), "--thresholds", str(thresholds),
                       cache=data_cache)
    assert result.returncode == 2, result.stdout
    reasons = [line for line in result.stdout.splitlines() if "in the baseline but missing from the candidate" in line]
    assert len(reasons) == 1 and "8 checks, e.g. lab-" in reasons[0] and "lab_recall / accuracy" in reasons[0]
    # cells no comparison rule covers are not asked for
    narrow = run_checks(Run.load(candidate), Thresholds.model_validate(
        {"accuracy_drop": [{"model": "lab-*", "task": "lab_coarse", "metric": "accuracy"}]}), Run.load(default_run))
    assert not [c for c in narrow if c.kind == "missing"] and exit_code(narrow) == 0


def test_an_internal_error_exits_3_not_1(default_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import casa_eval.check as check
    from casa_eval.cli import main

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(check, "run_checks", broken)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("version: 1\nabsolute: [{metric: accuracy, min: 0}]\n")
    monkeypatch.setattr("sys.argv", ["casa-eval", "check", str(default_run), "--thresholds", str(thresholds)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 3
    assert "internal error in casa-eval check (ZeroDivisionError: division by zero); please report it" in (
        capsys.readouterr().err.replace("\n", " "))


def test_a_damaged_per_sample_file_is_bad_input_not_an_internal_error(default_run: Path, tmp_path: Path,
                                                                      data_cache: Path) -> None:
    candidate = _copy(default_run, tmp_path, "candidate")
    samples = candidate / "samples" / "lab-casa__lab_coarse.jsonl"
    samples.write_text(samples.read_text() + '{"doc_id": 99, "scor\n')
    thresholds = tmp_path / "drop.yaml"
    thresholds.write_text("version: 1\naccuracy_drop:\n  - {model: lab-casa, task: lab_coarse, metric: accuracy}\n")
    result = casa_eval("check", str(candidate), "--baseline", str(default_run), "--thresholds", str(thresholds),
                       cache=data_cache)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {samples}:") and "per-sample record" in lines[0]
