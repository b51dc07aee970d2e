"""The hooks the lab task YAMLs call (`tasks/lab/*.yaml`).

Each task's data file is one JSON row naming the task, the number of test items and the seed; `process_docs`
swaps it for the generated items. Images are drawn from each item's spec when lmms-eval asks for them.
"""

from __future__ import annotations

import re
from typing import Any

import datasets
from PIL import Image

from casa_eval.data.lab.tasks import LAB_TASKS, LabItem, held_out, render


def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    if len(dataset) != 1:
        raise ValueError(f"a lab task's data file must hold exactly one row, found {len(dataset)}")
    spec = dataset[0]
    if spec["task"] not in LAB_TASKS:
        raise ValueError(f"unknown lab task {spec['task']!r}")
    return datasets.Dataset.from_list([item.to_doc() for item in held_out(spec["task"], int(spec["items"]),
                                                                             int(spec["seed"]))])


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [Image.fromarray(render(spec)) for spec in LabItem.from_doc(doc).images]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return str(doc["text"])


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Exact match of the first generated word with the answer (case and punctuation ignored)."""
    words = normalise(results[0] if results else "").split()
    return {"accuracy": float(bool(words) and words[0] == normalise(doc["answer"]))}
