"""The headline command, `casa-eval run --models casa,insertion --tasks docvqa,chartqa`: offline it fails fast
with one line per missing piece; with tiny checkpoints standing in for the weights and a snapshot data
directory standing in for the hub, it runs end to end through lmms-eval and the streaming profiler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.clitools import casa_eval


def test_offline_it_names_every_missing_piece_and_exits_2(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("run", "--models", "casa,insertion", "--tasks", "docvqa,chartqa", "-o", str(tmp_path / "r"),
                       cache=data_cache)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), lines
    weights = [line for line in lines if "are not available offline" in line]
    flags = [line for line in lines if "pass --trust-remote-code" in line]
    data = [line for line in lines if "casa-eval data pull" in line]
    assert len(weights) == len(flags) == len(data) == 2 and len(lines) == 6
    assert "kyutai/CASA-Helium1-VL-2B " in weights[0] and "kyutai/Helium1-VL-2B " in weights[1]
    assert "casa-eval data pull docvqa --to DIR" in data[0] and "casa-eval data pull chartqa --to DIR" in data[1]
    # refused before anything started: no results, and lmms-eval (whose hub path retries) was never loaded
    assert not (tmp_path / "r" / "results.json").exists() and not (tmp_path / "r" / "lmms_eval.log").exists()


def test_with_tiny_checkpoints_and_a_data_dir_it_runs_end_to_end(
        tmp_path: Path, data_cache: Path, paper_data_dir: Path, tiny_kyutai: dict[str, Path]) -> None:
    out = tmp_path / "run"
    models = f"casa={tiny_kyutai['casa']},insertion={tiny_kyutai['insertion']}"
    result = casa_eval("run", "--models", models, "--tasks", "docvqa", "--data-dir", str(paper_data_dir),
                       "--trust-remote-code", "--limit", "1", "-o", str(out), cache=data_cache, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    # neither checkpoint has passed `casa-eval verify` on this machine: one warning line each, and it is recorded
    assert f"casa-eval verify casa={tiny_kyutai['casa']} --trust-remote-code" in result.stderr
    assert f"casa-eval verify insertion={tiny_kyutai['insertion']} --trust-remote-code" in result.stderr

    results = json.loads((out / "results.json").read_text())
    assert results["status"]["state"] == "complete" and not results["status"]["errors"]
    assert {m["name"]: m["verification"]["status"] for m in results["config"]["models"]} == {
        "casa": "unverified", "insertion": "unverified"}
    scored = {(row["model"], row["task"], row["metric"]) for row in results["accuracy"]}
    assert scored == {("casa", "casa_docvqa", "anls_star"), ("insertion", "casa_docvqa", "anls_star")}
    assert all(row["n"] == 1 for row in results["accuracy"])

    efficiency = results["efficiency"]
    records = {m["name"]: m for m in efficiency["model_records"]}
    assert set(records) == {"casa", "insertion"}  # real checkpoints: no zoo text-only floor is invented
    assert records["casa"]["mechanism"] == "casa" and records["insertion"]["mechanism"] == "insertion"
    assert records["casa"]["checkpoint"] == str(tiny_kyutai["casa"])
    assert records["casa"]["cache_tokens_per_image"] == 0
    assert records["insertion"]["cache_tokens_per_image"] == records["insertion"]["image_tokens"] > 0
    for model in efficiency["models"]:
        assert model["kv_bytes_match_analytic"] and model["turns_completed"] > 0, model["model"]
    assert (out / "turns.parquet").is_file()
    report = (out / "report.html").read_text()
    assert 'class="published"><td>CASA-Helium1-VL-2B<' in report  # Kyutai's numbers as reference rows
    assert "casa: not verified on this machine (casa-eval verify)" in report


PRIMARY_METRICS = {"casa_ai2d": "exact_match", "casa_chartqa": "relaxed_overall", "casa_docvqa": "anls_star",
                   "casa_gqa": "exact_match", "casa_infovqa": "anls_star", "casa_mme": "mme_total",
                   "casa_ocrbench": "ocrbench_accuracy", "casa_realworldqa": "exact_match",
                   "casa_textvqa": "exact_match"}


def test_every_casa_paper_task_runs_end_to_end_with_its_primary_metric(
        tmp_path: Path, data_cache: Path, paper_data_dir: Path, tiny_kyutai: dict[str, Path]) -> None:
    """All nine casa-paper tasks through `casa-eval run` on snapshot data with a tiny Kyutai model; MME gets one
    image pair (two documents), so its 0-2800 total is computed, and the report puts Kyutai's value beside it."""
    out = tmp_path / "run"
    result = casa_eval("run", "--models", f"casa={tiny_kyutai['casa']}", "--tasks", ",".join(PRIMARY_METRICS),
                       "--data-dir", str(paper_data_dir), "--trust-remote-code", "--limit", "2", "--profile", "none",
                       "-o", str(out), cache=data_cache, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    scored = {row["task"]: row for row in results["accuracy"] if row["metric"] == PRIMARY_METRICS[row["task"]]}
    assert set(scored) == set(PRIMARY_METRICS)
    mme = scored["casa_mme"]["value"]
    assert 0 <= mme <= 200  # one category, one pair: accuracy + accuracy+ of at most 100 each
    report = (out / "report.html").read_text()
    assert "casa_mme" in report and "1572" in report  # CASA-Helium1-VL-2B's published MME total


# registry name each family stands in for
FAMILY_NAMES = {"qwen2_5_vl": "insertion-qwen", "llava": "insertion-llava", "mllama": "gated-xattn", "blip2": "qformer"}

SHORT_PROFILE = """description: a few turns, for tests
scenario: {fps: 2, tokens_per_turn: 4, prompt: "Describe the frame.", turns: 4, warmup_turns: 1, repeats: 1}
dtype: float32
device: cpu
"""


def test_every_family_runs_through_lmms_eval_and_the_profiler(
        tmp_path: Path, data_cache: Path, tiny_checkpoint: Any) -> None:
    """Each family's tiny checkpoint, from its directory: evaluated on a synthetic task through lmms-eval and
    streamed for a few turns, with measured memory equal to the analytic one."""
    profile = tmp_path / "short.yaml"
    profile.write_text(SHORT_PROFILE)
    models = ",".join(f"{name}={tiny_checkpoint(family)}" for family, name in FAMILY_NAMES.items())
    out = tmp_path / "run"
    result = casa_eval("run", "--models", models, "--tasks", "synth_docvqa", "--limit", "1", "--profile",
                       str(profile), "-o", str(out), cache=data_cache, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {row["model"] for row in results["accuracy"]} == set(FAMILY_NAMES.values())
    records = {m["name"]: m for m in results["efficiency"]["model_records"]}
    assert {name: records[name]["mechanism"] for name in FAMILY_NAMES.values()} == {
        "insertion-qwen": "insertion", "insertion-llava": "insertion", "gated-xattn": "gated_cross_attention",
        "qformer": "qformer"}
    assert records["gated-xattn"]["config"]["cross_attention_cache"] == "latest"
    for model in results["efficiency"]["models"]:
        assert model["turns_completed"] == 4 and model["kv_bytes_match_analytic"], model["model"]
