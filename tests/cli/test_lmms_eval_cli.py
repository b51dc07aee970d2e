"""lmms-eval's own CLI runs a casa-eval model (entry point) on a casa-eval task (include path) with the same
metric and predictions as `casa-eval run`, in one process and under accelerate's 2-process data-parallel
launch — on a real-checkpoint path: a tiny CASA exported with Kyutai's remote-code interface, loaded with
trust_remote_code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from casa_eval.results import load_results
from tests.clitools import REPO, casa_eval, cli_env

LIMIT = 6


def _lmms_value(out: Path, metric: str) -> float:
    [results_file] = list(out.rglob("*_results.json"))
    data = json.loads(results_file.read_text())
    return float(data["results"]["synth_docvqa"][f"{metric},none"])


def _lmms_predictions(out: Path) -> dict[int, str]:
    samples = [json.loads(line) for f in out.rglob("*_samples_synth_docvqa.jsonl") for line in f.open()]
    # lmms-eval's sample tracker strips responses when it writes them
    return {s["doc_id"]: (s["filtered_resps"][0] if isinstance(s["filtered_resps"], list)
                          else s["filtered_resps"]).strip() for s in samples}


@pytest.fixture(scope="module")
def ours(tiny_kyutai: dict[str, Path], data_cache: Path,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[float, dict[int, str]]:
    """`casa-eval run` on the same model (a tiny CASA with Kyutai's remote-code interface), task, limit and
    seed."""
    run = tmp_path_factory.mktemp("ours") / "out"
    result = casa_eval("run", "--models", f"casa={tiny_kyutai['casa']}", "--trust-remote-code", "--tasks",
                       "synth_docvqa", "--limit", str(LIMIT), "--batch-size", "1", "--seed", "0", "--profile", "none",
                       "-o", str(run), cache=data_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    [anls] = [r for r in load_results(run).accuracy if r.metric == "anls"]
    samples = [json.loads(line) for line in (run / "samples" / "casa__synth_docvqa.jsonl").open()]
    return anls.value, {s["doc_id"]: s["prediction"].strip() for s in samples}


def _lmms_args(out: Path, checkpoint: Path) -> list[str]:
    return ["--model", "casa", "--model_args", f"checkpoint={checkpoint},trust_remote_code=true", "--tasks",
            "synth_docvqa", "--include_path", str(REPO / "tasks"), "--limit", str(LIMIT), "--batch_size", "1",
            "--output_path", str(out), "--log_samples", "--seed", "0,0,0,0", "--verbosity", "ERROR"]


def test_python_m_lmms_eval_matches_casa_eval_run(tmp_path: Path, data_cache: Path, tiny_kyutai: dict[str, Path],
                                                  ours: tuple[float, dict[int, str]]) -> None:
    out = tmp_path / "lmms"
    result = subprocess.run([sys.executable, "-m", "lmms_eval", *_lmms_args(out, tiny_kyutai["casa"])],
                            capture_output=True, text=True, env=cli_env(data_cache), cwd=tmp_path, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert _lmms_value(out, "anls") == pytest.approx(ours[0], abs=1e-12)
    assert _lmms_predictions(out) == ours[1]  # the same text for every document, not only the same score


def test_accelerate_two_cpu_processes(tmp_path: Path, data_cache: Path, tiny_kyutai: dict[str, Path],
                                      ours: tuple[float, dict[int, str]]) -> None:
    """Data-parallel evaluation of a real (remote-code) checkpoint: both ranks' shards are gathered and every
    prediction equals the one-process run's."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None
    out = tmp_path / "dp"
    command = [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
               "no", "--dynamo_backend", "no", "-m", "lmms_eval", *_lmms_args(out, tiny_kyutai["casa"])]
    result = subprocess.run(command, capture_output=True, text=True, env=cli_env(data_cache), cwd=tmp_path,
                            timeout=900)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    predictions = _lmms_predictions(out)
    assert sorted(predictions) == list(range(LIMIT))  # both ranks' shards gathered
    assert _lmms_value(out, "anls") == pytest.approx(ours[0], abs=1e-12)
    assert predictions == ours[1]
