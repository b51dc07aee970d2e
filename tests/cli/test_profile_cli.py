"""`casa-eval profile` end to end, and without lmms-eval or plotly importable (as on the GPU machines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from casa_eval.results import load_results
from tests.clitools import REPO, casa_eval, cli_env
from tests.profiling.helpers import tiny_profile

BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lmms_eval", "plotly"):
            raise ImportError(f"{name} is blocked for this test")
        return None
sys.meta_path.insert(0, _Block())
"""


def _profile_file(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_profile(**overrides).model_dump(mode="json")))
    return path


def test_profile_command_writes_results_and_turns_without_lmms_eval_and_plotly(tmp_path: Path,
                                                                              data_cache: Path) -> None:
    """The profiler must not need lmms-eval or plotly (GPU machines may lack them): both are blocked here."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = cli_env(data_cache)
    env["PYTHONPATH"] = str(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "casa_eval", "profile", "--models", "zoo-casa,zoo-insertion", "--profile",
               str(_profile_file(tmp_path)), "--repeats", "2", "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    check = subprocess.run([sys.executable, "-c", "import lmms_eval"], capture_output=True, text=True, env=env)
    assert "blocked for this test" in check.stderr  # the blocker really was active

    assert "streaming profile" in result.stdout and "zoo-text-only" in result.stdout  # the floor is added
    results = load_results(out)
    assert results.efficiency is not None and results.accuracy == []
    assert [m.model for m in results.efficiency.models] == ["zoo-text-only", "zoo-casa", "zoo-insertion"]
    turns = pd.read_csv(out / "turns.csv")
    assert len(turns) == 3 * 2 * 4 and {"ttft_ms", "kv_bytes", "analytic_kv_bytes", "oom"} <= set(turns.columns)
    assert (turns.kv_bytes == turns.analytic_kv_bytes).all()
    assert len(pd.read_parquet(out / "turns.parquet")) == len(turns)
    df = results.to_dataframe()
    assert {"turn_ms_slope", "turn_ms_last10pct"} <= set(df[df.section == "efficiency"].metric)


def test_unknown_profile_and_bad_budget(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("profile", "--profile", "cpu-lnog", cache=data_cache)
    assert result.returncode == 2 and "unknown profile 'cpu-lnog'" in result.stderr and "cpu-long" in result.stderr
    bad = casa_eval("profile", "--profile", "cpu-smoke", "--memory-budget", "lots", cache=data_cache)
    assert bad.returncode == 2 and "cannot read memory size" in bad.stderr


CTRL_C_AT_STEP = """
import sys

from casa_eval.cli import main
from casa_eval.profiling import session_loop

AT = int(sys.argv[1])
calls = 0
step = session_loop.TurnRunner.step


def interrupting_step(self):
    global calls
    calls += 1
    if calls == AT:
        raise KeyboardInterrupt  # the moment a Ctrl-C lands inside a turn
    return step(self)


session_loop.TurnRunner.step = interrupting_step
sys.argv = ["casa-eval", *sys.argv[2:]]
main()
"""


def test_an_interrupted_profile_keeps_its_turns_and_resumes_to_every_turn_exactly_once(
        tmp_path: Path, data_cache: Path) -> None:
    out, models, turns, repeats, warmup = tmp_path / "out", 3, 4, 2, 1  # the text-only floor is added
    args = ["profile", "--models", "zoo-casa,zoo-insertion", "--profile", str(_profile_file(tmp_path)),
            "--turns", str(turns), "--repeats", str(repeats), "-o", str(out)]
    at = models * warmup + models * turns + models * 2 + 2  # inside the second repeat, turn 2 of the 2nd model
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_AT_STEP)
    interrupted = subprocess.run([sys.executable, str(script), str(at), *args], capture_output=True, text=True,
                                 env=cli_env(data_cache), cwd=REPO, timeout=600, stdin=subprocess.DEVNULL)
    assert interrupted.returncode == 130, interrupted.stderr
    assert interrupted.stderr.strip().splitlines()[-1] == (
        f"error: interrupted; finished turns are kept in {out / 'turns.partial.jsonl'}. Continue with: "
        f"casa-eval profile --resume --output-dir {out}")
    journal = pd.read_json(out / "turns.partial.jsonl", lines=True, precise_float=True)
    assert len(journal) == models * turns + models * 2 + 1  # every turn finished before the Ctrl-C
    assert load_results(out).status.state == "interrupted"

    changed = casa_eval("profile", "--resume", "--turns", "6", "-o", str(out), cache=data_cache)
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert changed.stderr.strip().splitlines()[-1] == (
        f"error: --resume continues {out} with its stored settings; turns differ — drop those options, or start "
        "a new profile with another --output-dir")

    resumed = casa_eval("profile", "--resume", "-o", str(out), cache=data_cache)
    assert resumed.returncode == 0, resumed.stderr
    results = load_results(out)
    assert results.status.state == "complete" and results.efficiency is not None
    assert results.efficiency.profile_config["scenario"]["turns"] == turns  # the settings that ran
    final = pd.read_csv(out / "turns.csv")  # floats read back exactly (pandas 3 parses round-trip)
    keys = list(zip(final.model, final.repeat, final.turn, strict=True))
    assert len(keys) == len(set(keys)) == models * turns * repeats  # every turn exactly once
    kept = final.merge(journal, on=["model", "repeat", "turn"], suffixes=("", "_before"))
    assert len(kept) == len(journal) and (kept.turn_ms == kept.turn_ms_before).all()  # kept, not re-measured
    assert (final.kv_bytes == final.analytic_kv_bytes).all()  # replayed sessions reached the same state
