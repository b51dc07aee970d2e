"""Every user-facing failure: one clear line, a non-zero exit code, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clitools import casa_eval


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


def test_unknown_model_lists_the_valid_names(data_cache: Path) -> None:
    result = casa_eval("run", "--models", "zoo-casa,zoo-nope", cache=data_cache)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "unknown model 'zoo-nope'" in line and "zoo-casa" in line and "zoo-insertion" in line


def test_unknown_task_lists_the_valid_names(data_cache: Path) -> None:
    result = casa_eval("run", "--tasks", "docvqa_vall", cache=data_cache)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "unknown task 'docvqa_vall'" in line and "synth_docvqa" in line


def test_paper_model_names_give_a_clear_error(data_cache: Path) -> None:
    result = casa_eval("run", "--models", "casa", cache=data_cache)
    assert result.returncode == 2
    assert "kyutai/CASA-Helium1-VL-2B" in _one_line_error(result)


@pytest.mark.parametrize(("text", "expected"), [
    ("models: [zoo-casa\n", "malformed YAML (line 2"),
    ("limit: many\n", "limit: Input should be a valid integer"),
    ("modles: [zoo-casa]\n", "modles: Extra inputs are not permitted"),
    ("zoo: {backbone: {hidden_size: -4}}\nmodels: [zoo-casa]\n", "backbone.hidden_size"),
])
def test_malformed_config_names_the_field(tmp_path: Path, data_cache: Path, text: str, expected: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    result = casa_eval("run", "--config", str(config), "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    assert expected in _one_line_error(result)


def test_unwritable_output_directory(tmp_path: Path, data_cache: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    target = locked / "run"
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "a-file" / "run"
            (tmp_path / "a-file").write_text("")
        result = casa_eval("run", "--models", "zoo-casa", "-o", str(target), cache=data_cache)
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2
    assert "is not writable" in _one_line_error(result)


def test_dataset_missing_offline_fails_fast_without_retries(tmp_path: Path, data_cache: Path) -> None:
    task_dir = tmp_path / "hub_tasks"
    task_dir.mkdir()
    (task_dir / "hub_docvqa.yaml").write_text(
        "task: hub_docvqa\ndataset_path: lmms-lab-encoder/DocVQA\ndataset_name: DocVQA\ntest_split: validation\n"
        "doc_to_text: question\ndoc_to_target: answers\n")
    result = casa_eval("run", "--models", "zoo-casa", "--tasks", "hub_docvqa", "--include-path", str(task_dir),
                       "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "lmms-lab-encoder/DocVQA" in line and "not available offline" in line
    # refused before lmms-eval is loaded (its own path retries the hub 5 x 2 s, then raises a traceback)
    assert not (tmp_path / "out" / "lmms_eval.log").exists()


def test_rerunning_into_a_finished_run_needs_resume(default_run: Path, data_cache: Path) -> None:
    again = casa_eval("run", "--models", "zoo-text-only", "--limit", "3", "-o", str(default_run), cache=data_cache)
    assert again.returncode == 2
    assert "--resume" in _one_line_error(again)
