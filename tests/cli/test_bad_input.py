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


# Each input below once gave a traceback, a misleading name or a late failure; now one line and exit 2, before
# any model loads (the run directories stay empty of results).


def test_model_name_with_markup_characters(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("run", "--models", "zoo-[/x]", "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    assert "unknown model 'zoo-[/x]'" in _one_line_error(result)


def test_task_name_with_brackets_is_named_whole(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("run", "--tasks", "mytask[v2]", "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    assert "unknown task 'mytask[v2]'" in _one_line_error(result)


def test_unreadable_memory_budget_in_a_profile_fails_when_read(tmp_path: Path, data_cache: Path) -> None:
    profile = tmp_path / "budget.yaml"
    profile.write_text("models: [lab-casa]\nscenario: {turns: 2}\nmemory_budget: lots\n")
    result = casa_eval("profile", "--profile", str(profile), "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "budget.yaml: memory_budget" in line and "cannot read memory size 'lots'" in line
    assert not (tmp_path / "out" / "results.json").exists()


def test_malformed_task_yaml_under_an_include_path(tmp_path: Path, data_cache: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "broken.yaml").write_text("task: [oops\n")
    result = casa_eval("run", "--include-path", str(tmp_path / "tasks"), "--models", "lab-casa", "--tasks",
                       "lab_coarse", "-o", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "broken.yaml: malformed YAML (line 2" in line


def test_malformed_stored_settings_on_resume(tmp_path: Path, data_cache: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_settings.json").write_text('{"models": [\n')
    result = casa_eval("run", "--resume", "-o", str(run), cache=data_cache)
    assert result.returncode == 2
    assert "run_settings.json: malformed run settings (line 2, column 1)" in _one_line_error(result)


@pytest.mark.parametrize("command", [["tiny", "llava", "--out"], ["data", "pull", "casa_mme", "--to"]])
def test_unwritable_output_of_tiny_and_data_pull(tmp_path: Path, data_cache: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("")
    result = casa_eval(*command, str(tmp_path / "a-file" / "out"), cache=data_cache)
    assert result.returncode == 2
    assert "is not writable" in _one_line_error(result)


def test_unknown_family_is_plural_in_english(tmp_path: Path, data_cache: Path) -> None:
    result = casa_eval("tiny", "lava", "--out", str(tmp_path / "out"), cache=data_cache)
    assert result.returncode == 2
    assert "unknown family 'lava'; valid families: blip2" in _one_line_error(result)


@pytest.mark.parametrize("command", [["run", "--models", "lab-casa", "--tasks", "lab_coarse"],
                                     ["profile", "--models", "lab-casa"]])
def test_missing_video_is_noticed_before_any_model_loads(tmp_path: Path, data_cache: Path,
                                                         command: list[str]) -> None:
    result = casa_eval(*command, "--video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out"),
                       cache=data_cache)
    assert result.returncode == 2
    assert "missing.mp4 does not exist" in _one_line_error(result)
    assert "loading" not in result.stderr + result.stdout
