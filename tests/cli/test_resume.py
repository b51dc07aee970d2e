"""Killing a run mid-way and re-running with --resume leaves every sample present exactly once."""

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
    tasks = write_toy_task(tmp_path / "tasks", docs=DOCS)
    run = tmp_path / "run"
    args = ["run", "--models", "zoo-text-only,zoo-casa", "--tasks", "toy_vqa", "--include-path", str(tasks),
            "--batch-size", "1", "--limit", str(DOCS), "--profile", "none", "-o", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "casa_eval", *args], cwd=REPO, env=cli_env(data_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = run / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= DOCS + 3:  # into the second model
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "casa-eval run --resume" in stderr and "Traceback" not in stderr
    interrupted = load_results(run)
    assert interrupted.status.state == "interrupted"
    assert "zoo-text-only|toy_vqa" in interrupted.status.finished
    assert "zoo-casa|toy_vqa" not in interrupted.status.finished
    journaled = len(journal.read_text().splitlines())

    resumed = casa_eval("run", "--resume", "-o", str(run), cache=data_cache)
    assert resumed.returncode == 0, resumed.stderr
    final = load_results(run)
    assert final.status.state == "complete"
    for model in ("zoo-text-only", "zoo-casa"):
        ids = [s["doc_id"] for s in _samples(run, model)]
        assert sorted(ids) == list(range(DOCS))  # every sample, exactly once
    # predictions finished before the interruption were reused, not recomputed
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 2 * DOCS
    assert journaled > DOCS
