"""Reading the YAML files users write (run configs, profiles, thresholds) into strict pydantic models, and
the JSON files casa-eval stored earlier (a run's or a training run's settings).

Unknown keys are rejected by the models (`extra="forbid"`); every problem becomes one line that names the
file and the field path, e.g. ``profile.yaml: scenario.turns: Input should be a valid integer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from casa_eval.errors import UserError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader or a subclass of it
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None


def read_json(path: Path, what: str) -> Any:
    """A JSON file casa-eval wrote earlier (stored settings, records); damage is one line naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed {what} (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None


def validation_message(source: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: {where}: {first.get('msg')}{more}"


def validate_data(model: type[M], data: Any, source: str) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise UserError(validation_message(source, exc)) from None


def load_yaml_model(path: Path, model: type[M]) -> M:
    return validate_data(model, read_yaml(path), str(path))
