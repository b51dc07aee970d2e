"""Interrupting a run mid-way and re-running with --resume leaves every sample present exactly once.

The run is interrupted at a point the test chooses: the toy task's image hook blocks once the journal holds the
first model's predictions and a few of the second's, and the test sends SIGINT only then — so the run cannot
finish first on a fast machine, nor be interrupted too early on a slow one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from casa_eval.results import load_results
from tests.clitools import REPO, casa_eval, cli_env, write_toy_task

DOCS = 8


def _samples(run: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (run / "samples" / f"{model}__toy_vqa.jsonl").read_text().splitlines()]


def test_interrupted_run_resumes_to_exactly_once(tmp_path: Path, data_cache: Path) -> None:
    run = tmp_path / "run"
    journal, ready = run / "predictions.jsonl", tmp_path / "paused"
    tasks = write_toy_task(tmp_path / "tasks", docs=DOCS, pause=(journal, DOCS + 3, ready))  # into the 2nd model
    args = ["run", "--models", "zoo-text-only,zoo-casa", "--tasks", "toy_vqa", "--include-path", str(tasks),
            "--batch-size", "1", "--limit", str(DOCS), "--profile", "none", "-o", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "casa_eval", *args], cwd=REPO, env=cli_env(data_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]  # it ended before reaching the pause
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"Continue with: casa-eval run --resume --output-dir {run}" in stderr and "Traceback" not in stderr
    interrupted = load_results(run)
    assert interrupted.status.state == "interrupted"
    assert "zoo-text-only|toy_vqa" in interrupted.status.finished
    assert "zoo-casa|toy_vqa" not in interrupted.status.finished
    journaled = len(journal.read_text().splitlines())
    assert journaled == DOCS + 3  # the predictions finished before the interruption, all of them kept

    # a resumed run is the same run: other settings are refused, and nothing is touched
    changed = casa_eval("run", "--resume", "--limit", "4", "--seed", "7", "-o", str(run), cache=data_cache)
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines()[-1] == (
        f"error: --resume continues {run} with its stored settings; limit, seed differ — drop those options, or "
        "start a new run with another --output-dir")
    assert len(journal.read_text().splitlines()) == journaled and load_results(run).status.state == "interrupted"
    same = ["--models", "zoo-text-only,zoo-casa", "--limit", str(DOCS)]  # repeating a stored value is fine
    resumed = casa_eval("run", "--resume", *same, "-o", str(run), cache=data_cache)
    assert resumed.returncode == 0, resumed.stderr
    final = load_results(run)
    assert final.status.state == "complete"
    for model in ("zoo-text-only", "zoo-casa"):
        ids = [s["doc_id"] for s in _samples(run, model)]
        assert sorted(ids) == list(range(DOCS))  # every sample, exactly once
    # predictions finished before the interruption were reused, not recomputed
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 2 * DOCS


CTRL_C_WHILE_LOADING = """
import sys
from pathlib import Path

from casa_eval.evaluation.run import RunSettings, SilentReporter, execute_run


class CtrlCWhileLoading(SilentReporter):
    def stage(self, message):
        if message == "loading lmms-eval":
            raise KeyboardInterrupt  # the moment a Ctrl-C lands while lmms-eval loads


settings = RunSettings(models=["lab-text-only"], tasks=["lab_coarse"], limit=2, profile=None,
                       output_dir=Path(sys.argv[1]))
try:
    execute_run(settings, reporter=CtrlCWhileLoading())
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_run_interrupted_while_lmms_eval_loads_can_be_resumed(tmp_path: Path, data_cache: Path) -> None:
    run = tmp_path / "run"
    interrupted = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_LOADING, str(run)], cwd=REPO,
                                 env=cli_env(data_cache), capture_output=True, text=True, timeout=300)
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert load_results(run).status.state == "interrupted"
    resumed = casa_eval("run", "--resume", "-o", str(run), cache=data_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_results(run).status.state == "complete"
    assert [s["doc_id"] for s in _samples_of(run, "lab-text-only", "lab_coarse")] == [0, 1]


def _samples_of(run: Path, model: str, task: str) -> list[dict]:
    return [json.loads(line) for line in (run / "samples" / f"{model}__{task}.jsonl").read_text().splitlines()]
