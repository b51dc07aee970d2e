"""Scores published by model authors, shown in the report as reference rows (never as measurements).

Reference files live in `casa_eval/report/published/*.yaml`: a `source`, the `scale` that turns a published
number into casa-eval's metric value (Kyutai reports percentages, OCRBench out of 1000, MME as a raw sum),
and `scores` rows `{model, task, value[, reproduced_by_authors]}`.
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
    published: float  # as printed by the authors
    value: float  # on casa-eval's metric scale
    source: str
    reproduced_by_authors: bool


def published_scores(tasks: set[str]) -> list[PublishedScore]:
    """Published scores for any of `tasks`, from every reference file."""
    out = []
    for path in sorted(_DIR.glob("*.yaml")) if _DIR.is_dir() else []:
        data = yaml.safe_load(path.read_text()) or {}
        source = str(data.get("source", path.stem))
        scale = data.get("scale", {})
        for row in data.get("scores", []):
            task = str(row["task"])
            if task not in tasks:
                continue
            divisor = float(scale.get(task, scale.get("default", 1)))
            out.append(PublishedScore(str(row["model"]), task, float(row["value"]), float(row["value"]) / divisor,
                                      source, bool(row.get("reproduced_by_authors", False))))
    return out
