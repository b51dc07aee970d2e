"""The results document keeps what it is given: non-finite metrics round-trip, a newer minor schema loads,
another major version is refused in one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from casa_eval.check import Run, Thresholds, exit_code, run_checks
from casa_eval.results.schema import SchemaVersionError, load_results
from tests.clitools import casa_eval


def _copy(default_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(default_run, tmp_path / "run"))


def test_a_nan_metric_is_stored_loads_back_and_the_gate_calls_it_invalid(default_run: Path, tmp_path: Path) -> None:
    run = _copy(default_run, tmp_path)
    results = load_results(run)
    results.accuracy[0].value = float("nan")
    results.accuracy[0].stderr = float("inf")
    results.save(run)
    assert '"value": "NaN"' in (run / "results.json").read_text()
    loaded = load_results(run)
    assert math.isnan(loaded.accuracy[0].value) and loaded.accuracy[0].stderr == math.inf
    first = loaded.accuracy[0]
    checks = run_checks(Run.load(run), Thresholds.model_validate(
        {"absolute": [{"model": first.model, "task": first.task, "metric": first.metric, "min": 0.0}]}))
    assert [c.verdict for c in checks] == ["invalid"]
    assert checks[0].detail == "the measured value is not a finite number"
    assert exit_code(checks) == 2


def test_a_newer_minor_schema_loads_ignoring_fields_it_does_not_know(default_run: Path, tmp_path: Path) -> None:
    run = _copy(default_run, tmp_path)
    data = json.loads((run / "results.json").read_text())
    data["schema_version"] = "1.99"
    data["a_future_section"] = {"anything": 1}
    data["accuracy"][0]["a_future_field"] = [1, 2]
    data["environment"]["a_future_probe"] = "x"
    (run / "results.json").write_text(json.dumps(data))
    loaded = load_results(run)
    assert loaded.accuracy[0].value == data["accuracy"][0]["value"]
    data["schema_version"] = "1.2"  # the same fields in a document of this schema are an error
    (run / "results.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"Extra inputs are not permitted \(\+2 more\)"):  # all three, one line
        load_results(run)


@pytest.mark.parametrize("version", ["2.0", "0.9", "", "one"])
def test_another_major_schema_is_refused_in_one_line(default_run: Path, tmp_path: Path, data_cache: Path,
                                                     version: str) -> None:
    run = _copy(default_run, tmp_path)
    data = json.loads((run / "results.json").read_text())
    data["schema_version"] = version
    (run / "results.json").write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match=r"this casa-eval reads 1\.x"):
        load_results(run)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("version: 1\nabsolute: [{metric: accuracy, min: 0}]\n")
    result = casa_eval("check", str(run), "--thresholds", str(thresholds), cache=data_cache)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()][-1].count("results schema") == 1


@pytest.mark.parametrize("command", [["report"], ["check", "--thresholds", "reports/thresholds.yaml"],
                                     ["run", "--resume", "-o"]])
def test_a_damaged_document_is_one_line_naming_the_file_and_key(default_run: Path, tmp_path: Path,
                                                               data_cache: Path, command: list[str]) -> None:
    run = _copy(default_run, tmp_path)
    data = json.loads((run / "results.json").read_text())
    data["config"]["seed"] = [1]
    (run / "results.json").write_text(json.dumps(data))
    args = [*command, str(run)] if command[-1] == "-o" else [command[0], str(run), *command[1:]]
    result = casa_eval(*args, cache=data_cache)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{run / 'results.json'}: config.seed: Input should be a valid integer" in lines[0]
