"""Every file a user (or a crash) can hand casa-eval, mutated at random: the outcome is accepted, or a
`UserError` of one line each (the CLI prints it and exits 2) — never any other exception, which the CLI
would show as a traceback. For the gate, run end to end through the CLI's entry point: exit 0, 1 or 2,
never 3 (casa-eval's own error).

Mutations are of two kinds: text (characters inserted, deleted or replaced anywhere, which breaks the YAML or
JSON itself) and structure (a value replaced by one of another type, a key dropped, an unknown key added).
Hypothesis runs derandomized, so the examples are the same on every machine."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casa_eval.errors import UserError
from tests.clitools import REPO

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ_CLI = settings(FUZZ, max_examples=30)  # a whole `casa-eval check` per example

ODD_VALUES = [None, True, False, 0, -1, 7, 1e308, math.nan, math.inf, "", "x", "lots", "1GiB", "-3", "[", [],
              [1, "a"], {}, {"k": None}, "zoo-[/x]", "mytask[v2]", "../../etc", "\u00e9\u2603"]
SYNTAX = list(":-[]{}\"',\n #&*!|>%@`\\\t0123456789ab")


@st.composite
def mutated(draw: st.DrawFn, text: str, form: str) -> str:
    """`text` (YAML or JSON, per `form`) after one to three random mutations."""
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 2)) == 0:  # one in three breaks the syntax, the others the content
            text = _text_mutation(draw, text)
            continue
        try:
            data = yaml.safe_load(text) if form == "yaml" else json.loads(text)
        except (yaml.YAMLError, ValueError):
            text = _text_mutation(draw, text)
            continue
        data = _structure_mutation(draw, data)
        text = (yaml.safe_dump(data, allow_unicode=True) if form == "yaml"
                else json.dumps(data, allow_nan=True))
    return text


def _text_mutation(draw: st.DrawFn, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    chunk = draw(st.text(st.sampled_from(SYNTAX) | st.characters(codec="utf-8"), min_size=1, max_size=4))
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    if how == "insert":
        return text[:at] + chunk + text[at:]
    if how == "delete":
        return text[:at] + text[at + len(chunk):]
    return text[:at] + chunk + text[at + len(chunk):]


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data[:5]):
            out += _paths(value, (*prefix, i))
    return out


def _structure_mutation(draw: st.DrawFn, data: Any) -> Any:
    path = draw(st.sampled_from(_paths(data)))
    how = draw(st.sampled_from(["value", "drop", "extra"]))
    if not path:
        return draw(st.sampled_from(ODD_VALUES)) if how == "value" else data
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "value":
        parent[last] = draw(st.sampled_from(ODD_VALUES))
    elif how == "drop":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "turns", "model", "min", "tasks", "version"]))] = (
            draw(st.sampled_from(ODD_VALUES)))
    return data


def accepted_or_one_line(action: Callable[[], Any]) -> None:
    try:
        action()
    except UserError as exc:
        assert exc.exit_code == 2
        assert exc.messages and all(m.strip() and "\n" not in m for m in exc.messages), exc.messages


def cli_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from casa_eval.cli import main

    with mock.patch.object(sys, "argv", ["casa-eval", *argv]), pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return int(stop.value.code or 0), captured.out + captured.err


# --- YAML a user writes -------------------------------------------------------------------------------------

RUN_CONFIG = """\
models: [lab-casa, zoo-insertion]
tasks: [lab_coarse, lab_fine_1]
limit: 4
seed: 1
profile: none
zoo:
  backbone: {hidden_size: 64, num_layers: 2}
  vision: {image_size: 32}
"""


@FUZZ
@given(text=mutated(RUN_CONFIG, "yaml"))
def test_run_config(tmp_path: Path, text: str) -> None:
    from casa_eval.config import load_yaml_model
    from casa_eval.evaluation.run import RunSettings, validate_names

    path = tmp_path / "run.yaml"
    path.write_text(text)
    accepted_or_one_line(lambda: validate_names(load_yaml_model(path, RunSettings)))


@FUZZ
@given(text=mutated((REPO / "profiles" / "lab-stream.yaml").read_text(), "yaml"))
def test_profile(tmp_path: Path, text: str) -> None:
    from casa_eval.profiling.profile_config import resolve_profile_config
    from casa_eval.profiling.runner import expand_models, zoo_dimensions

    path = tmp_path / "profile.yaml"
    path.write_text(text)

    def read() -> None:
        config = resolve_profile_config(str(path))
        expand_models(config, config.models)
        zoo_dimensions(config)
        config.budget_bytes()

    accepted_or_one_line(read)


@FUZZ
@given(text=mutated((REPO / "tasks" / "lab" / "lab_coarse.yaml").read_text(), "yaml"))
def test_task_yaml_under_an_include_path(tmp_path: Path, text: str) -> None:
    from casa_eval.registry import available_tasks

    (tmp_path / "mine").mkdir(exist_ok=True)
    (tmp_path / "mine" / "task.yaml").write_text(text)
    accepted_or_one_line(lambda: available_tasks([tmp_path / "mine"]))


@FUZZ_CLI
@given(text=mutated((REPO / "reports" / "thresholds.yaml").read_text(), "yaml"))
def test_thresholds_through_the_gate(tmp_path: Path, text: str, default_run: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    code, output = cli_exit(["check", str(default_run), "--thresholds", str(path)], capsys)
    assert code in (0, 1, 2) and "Traceback" not in output, output[-2000:]


# --- JSON casa-eval wrote, damaged ----------------------------------------------------------------------------

@FUZZ_CLI
@given(data=st.data())
def test_results_document_through_the_gate(tmp_path: Path, data: st.DataObject, default_run: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = data.draw(mutated((default_run / "results.json").read_text(), "json"))
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "results.json").write_text(text)
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nabsolute:\n  - {model: '*', task: '*', metric: '*', section: accuracy, min: 0}\n")
    code, output = cli_exit(["check", str(run), "--thresholds", str(rules)], capsys)
    assert code in (0, 1, 2) and "Traceback" not in output, output[-2000:]


@FUZZ
@given(data=st.data())
def test_stored_run_settings(tmp_path: Path, data: st.DataObject, default_run: Path) -> None:
    from casa_eval.config import read_json, validate_data
    from casa_eval.evaluation.run import RunSettings

    path = tmp_path / "run_settings.json"
    path.write_text(data.draw(mutated((default_run / "run_settings.json").read_text(), "json")))
    accepted_or_one_line(lambda: validate_data(RunSettings, read_json(path, "run settings"), str(path)))


@FUZZ
@given(data=st.data())
def test_training_record(tmp_path: Path, data: st.DataObject) -> None:
    from casa_eval.training.record import load_record

    shipped = REPO / "casa_eval" / "trained" / "seed0" / "lab-casa" / "training_record.json"
    (tmp_path / "training_record.json").write_text(data.draw(mutated(shipped.read_text(), "json")))
    accepted_or_one_line(lambda: load_record(tmp_path))


# --- a user's training data -----------------------------------------------------------------------------------

TRAIN_ROWS = [{"images": ["a.png"], "question": "colour", "answer": "red"},
              {"image": "b.png", "question": "<image> which shape?", "answers": ["disc", "circle"]}]


@FUZZ
@given(which=st.sampled_from(range(len(TRAIN_ROWS))), data=st.data())
def test_training_data_rows(tmp_path: Path, which: int, data: st.DataObject) -> None:
    from PIL import Image

    from casa_eval.training.data import read_rows

    for name in ("a.png", "b.png"):
        if not (tmp_path / name).exists():
            Image.new("RGB", (8, 8)).save(tmp_path / name)
    rows = [json.dumps(row) for row in TRAIN_ROWS]
    rows[which] = data.draw(mutated(rows[which], "json"))  # one damaged row among good ones
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    accepted_or_one_line(lambda: read_rows(tmp_path, "train"))
