"""The committed gate holds what the trained lab models learned: a checkpoint whose vision projector is broken
falls below its accuracy floors and `casa-eval check` exits 1, while the shipped checkpoint passes them."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from casa_eval._paths import trained_dir
from casa_eval.check import Run, Thresholds, run_checks
from casa_eval.config import load_yaml_model
from tests.clitools import REPO, casa_eval

FLOORED = {"lab-insertion / lab_fine_1 / accuracy", "lab-insertion / lab_coarse / accuracy"}


def _run(tmp_path: Path, cache: Path, name: str, checkpoint: Path) -> Path:
    out = tmp_path / name
    result = casa_eval("run", "--models", f"lab-insertion={checkpoint}", "--tasks", "lab_fine_1,lab_coarse",
                       "--limit", "40", "--profile", "none", "-o", str(out), cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_a_broken_mechanism_falls_below_its_floors(tmp_path: Path, data_cache: Path) -> None:
    shipped = trained_dir() / "seed0" / "lab-insertion"
    broken = tmp_path / "broken-insertion"
    shutil.copytree(shipped, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["vision.projector.fc2.weight"] = weights["vision.projector.fc2.weight"] * 0.0  # images now carry nothing
    save_file(weights, str(broken / "model.safetensors"))

    rules = load_yaml_model(REPO / "reports" / "thresholds.yaml", Thresholds)
    verdicts = {c.subject: c.verdict for c in run_checks(Run.load(_run(tmp_path, data_cache, "good", shipped)), rules)}
    assert all(verdicts[s] == "pass" for s in FLOORED)

    bad_run = _run(tmp_path, data_cache, "bad", broken)
    verdicts = {c.subject: c.verdict for c in run_checks(Run.load(bad_run), rules)}
    assert all(verdicts[s] == "fail" for s in FLOORED)
    result = casa_eval("check", str(bad_run), "--thresholds", str(REPO / "reports" / "thresholds.yaml"),
                       cache=data_cache)
    assert result.returncode == 1 and "check failed (regression)" in result.stdout
