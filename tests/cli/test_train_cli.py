"""`casa-eval train` through the real command: one-line errors with exit 2, Ctrl-C with exit 130 and nothing
finished lost, and a mechanism defined outside the package going through train -> run -> profile -> report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.clitools import REPO, casa_eval, cli_env

# A mechanism of one's own, written as a user would (docs/lab.md): it inserts one mean-pooled token per image.
TOY = '''
import os
import signal

from casa_eval.fusion import Mechanism

CALLS = [0]


class MeanToken(Mechanism):
    name = "mean_token"
    inserts_tokens = True

    def image_tokens(self, features):
        stop_at = int(os.environ.get("TOY_CTRL_C_AT_CALL", "0"))
        CALLS[0] += 1
        if CALLS[0] == stop_at:  # the test presses Ctrl-C at a point of its choosing
            os.kill(os.getpid(), signal.SIGINT)
        return features.mean(1, keepdim=True)

    def inserted_tokens(self, image_tokens):
        return 1
'''


def _toy_env(tmp_path: Path, cache: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "toy_fusion.py").write_text(TOY)
    env = cli_env(cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casa_eval", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_unknown_mechanism_and_one_that_does_not_import(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("train", "--mechanisms", "cassa", "-o", str(tmp_path / "a"), cache=data_cache)
    assert result.returncode == 2 and "unknown mechanism 'cassa'" in _one_line(result)
    result = casa_eval("train", "--mechanisms", "no_such_module:Gate", "-o", str(tmp_path / "b"), cache=data_cache)
    assert result.returncode == 2 and "cannot import no_such_module:Gate" in _one_line(result)


def test_malformed_dataset_folder_names_the_file_and_line(tmp_path: Path, data_cache: Path) -> None:
    folder = tmp_path / "mydata"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    good = json.dumps({"image": "a.png", "question": "colour", "answer": "red"})
    (folder / "test.jsonl").write_text(good + "\n")
    cases = [
        (good + "\n{not json\n", "train.jsonl:2: not valid JSON"),
        (good + "\n" + json.dumps({"image": "b.png", "question": "q", "answer": "a"}) + "\n",
         "train.jsonl:2: image 'b.png' not found"),
        (json.dumps({"image": "a.png", "question": "q"}) + "\n", "train.jsonl:1: 'answer' must be a non-empty string"),
    ]
    for i, (train_rows, message) in enumerate(cases):
        (folder / "train.jsonl").write_text(train_rows)
        result = casa_eval("train", "--data", str(folder), "-o", str(tmp_path / f"out{i}"), cache=data_cache)
        assert result.returncode == 2 and message in _one_line(result)


def test_ctrl_c_exits_130_keeps_finished_steps_and_resumes(tmp_path: Path, data_cache: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--mechanisms", "toy_fusion:MeanToken", "--steps", "8", "--batch-size", "4", "--threads", "1",
            "--tasks", "lab_coarse", "-o", str(out)]
    interrupted = _run(args, _toy_env(tmp_path, data_cache, TOY_CTRL_C_AT_CALL="5"))  # during step 5
    assert interrupted.returncode == 130
    line = _one_line(interrupted)
    assert f"Continue with: casa-eval train --resume --output-dir {out}" in line
    record = json.loads((out / "seed0" / "lab-MeanToken" / "training_record.json").read_text())
    assert record["state"] == "interrupted" and record["steps"] == 5  # the step under way finished and was kept
    before = record["loss"]
    changed = _run(["train", "--resume", "--steps", "9", "-o", str(out)], _toy_env(tmp_path, data_cache))
    assert changed.returncode == 2 and "steps differ" in _one_line(changed)
    resumed = _run(["train", "--resume", "-o", str(out)], _toy_env(tmp_path, data_cache))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((out / "seed0" / "lab-MeanToken" / "training_record.json").read_text())
    assert record["state"] == "complete" and record["steps"] == 8 and record["loss"][:5] == before


def test_a_mechanism_of_your_own_goes_through_train_run_profile_report(tmp_path: Path, data_cache: Path) -> None:
    env = _toy_env(tmp_path, data_cache)
    trained = tmp_path / "trained"
    result = _run(["train", "--mechanisms", "toy_fusion:MeanToken,text_only,casa", "--steps", "4", "--batch-size",
                   "4", "--threads", "1", "-o", str(trained)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "casa-eval run --trained" in result.stdout
    assert "lab-MeanToken seed 0: 4 steps" in result.stdout  # without a terminal, a line per finished model
    run = tmp_path / "eval"
    result = _run(["run", "--trained", str(trained), "--tasks", "lab_coarse,lab_recall", "--limit", "4",
                   "--profile", "none", "-o", str(run)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((run / "results.json").read_text())
    models = {m["name"]: m for m in document["config"]["models"]}
    assert set(models) == {"lab-MeanToken", "lab-text-only", "lab-casa"}
    assert models["lab-MeanToken"]["mechanism"] == "toy_fusion:MeanToken"
    assert models["lab-MeanToken"]["training"]["steps"] == 4
    assert {c["model"] for c in document["lab"]["cells"]} == set(models)
    profile = tmp_path / "profile"
    result = _run(["profile", "--trained", str(trained), "--profile", "lab-stream", "--turns", "3", "--repeats", "1",
                   "-o", str(profile)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    efficiency = json.loads((profile / "results.json").read_text())["efficiency"]
    toy = [r for r in efficiency["records"] if r["model"] == "lab-MeanToken"]
    assert len(toy) == 3 and toy[1]["kv_tokens"] - toy[0]["kv_tokens"] == toy[1]["prompt_tokens"] + 8 - 1 + 1
    result = _run(["report", str(run), str(profile), "--out", str(tmp_path / "report.html")], env)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    assert "lab-MeanToken" in html and "Fusion lab" in html
