"""Scores published by model authors, shown in the report as reference rows (never as measurements).

Reference files live in `casa_eval/report/published/*.yaml`::

    source: "<where the numbers come from>"
    scores:
      - {model: CASA-Helium1-VL-2B, task: casa_docvqa, value: 83.2}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

_DIR = Path(__file__).resolve().parent / "published"


@dataclass(frozen=True)
class PublishedScore:
    model: str
    task: str
    value: float
    source: str


def published_scores(tasks: set[str]) -> list[PublishedScore]:
    """Published scores for any of `tasks`, from every reference file."""
    out = []
    for path in sorted(_DIR.glob("*.yaml")) if _DIR.is_dir() else []:
        data = yaml.safe_load(path.read_text()) or {}
        source = str(data.get("source", path.stem))
        for row in data.get("scores", []):
            if row["task"] in tasks:
                out.append(PublishedScore(str(row["model"]), str(row["task"]), float(row["value"]), source))
    return out
