"""lmms-eval hooks for a dataset folder of a user's own (the format is in `casa_eval.training.data`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from casa_eval.data.lab.lmms import normalise


def make_hooks(folder: Path) -> tuple[Callable[..., Any], ...]:
    """(doc_to_visual, doc_to_text, doc_to_target, process_results) for rows of `folder/test.jsonl`."""

    def images(doc: dict[str, Any]) -> list[str]:
        return list(doc.get("images") or [doc["image"]])

    def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
        out = []
        for name in images(doc):
            with Image.open(folder / name) as image:
                out.append(image.convert("RGB"))
        return out

    def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
        return str(doc["question"])

    def doc_to_target(doc: dict[str, Any]) -> str:
        return str(doc.get("answer") or (doc.get("answers") or [""])[0])

    def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
        answers = [doc["answer"]] if doc.get("answer") else list(doc.get("answers") or [])
        predicted = normalise(results[0] if results else "")
        return {"accuracy": float(any(predicted == normalise(a) for a in answers))}

    return doc_to_visual, doc_to_text, doc_to_target, process_results
