"""The GPU check's CPU dry run: every step runs (or says why it is skipped), the summary and the report are
written, and both turn loops profile text-only, CASA and insertion."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.clitools import REPO


def _gpu_check():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_dry_run_on_cpu(tmp_path: Path) -> None:
    gpu_check = _gpu_check()
    assert gpu_check.missing_modules() == []
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--turns", "2"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = summary["steps"]
    assert list(steps) == ["environment", "gpu_tests", "timing", "nvml", "window_attention", "casa_decode_buffer",
                           "profiles"]
    assert summary["ok"] and all(s["status"] in ("ok", "skipped") for s in steps.values())
    assert steps["gpu_tests"]["status"] == "skipped" and steps["gpu_tests"]["failed"] == []
    assert all(v.startswith("skipped") for v in steps["gpu_tests"]["tests"].values())  # collected, none runs on CPU
    assert steps["nvml"]["reason"] == "NVML needs a CUDA device"
    assert steps["timing"]["clock_kind"] == "perf_counter"
    assert {r["backend"] for r in steps["window_attention"]["rows"]} == {"dense", "sdpa"}
    assert steps["casa_decode_buffer"]["window_buffer_ms_per_token"] > 0
    runs = steps["profiles"]["runs"]
    assert set(runs) == {"cpu-smoke-dry-run-casa-eval", "cpu-smoke-dry-run-kyutai"}
    for key, run in runs.items():
        assert [m["model"] for m in run["models"]] == ["zoo-text-only", "zoo-casa", "zoo-insertion"], key
        assert all(m["turns_completed"] == 2 and m["kv_bytes_match_analytic"] for m in run["models"]), key
        assert all((m["kyutai"] is not None) == key.endswith("kyutai") for m in run["models"]), key
    report = (tmp_path / "report.html").read_text()
    assert "casa-eval loop" in report and "kyutai loop" in report


def test_missing_modules_are_named_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    gpu_check = _gpu_check()
    monkeypatch.setattr(gpu_check, "NEEDED", (*gpu_check.NEEDED, "no_such_module_here"))
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gpu_check: missing Python modules: no_such_module_here (install them, or carry their wheels)"]
    assert not (tmp_path / "summary.json").exists()
