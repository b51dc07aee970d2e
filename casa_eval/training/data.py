"""Where training examples come from: the lab tasks, or a dataset folder of a user's own.

A training run draws its batch for step `s` from (seed, s) alone, so every mechanism sees the same examples
in the same order, and a resumed run draws exactly what an uninterrupted one would. Every example of a batch
has the same number of images (the zoo batches interleaved conversations of one shape).

A dataset folder (docs/lab.md)::

    DIR/train.jsonl   {"images": ["a.png"], "question": "What colour is the glyph at B3", "answer": "red"}
    DIR/test.jsonl    the same fields; evaluated through lmms-eval (`casa-eval run --trained OUT`)
    DIR/*.png         images, paths relative to DIR

`image` may replace a one-element `images`; `question` may hold one `<image>` per image to interleave
them. Problems are reported as one line naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from casa_eval.data.lab.tasks import LAB_TASKS, held_out_keys, render, train_items
from casa_eval.errors import UserError


@dataclass(frozen=True)
class Example:
    images: tuple[Any, ...]  # PIL images or HxWx3 uint8 arrays
    text: str  # the user's text, `<image>` placeholders optional
    answer: str


class LabData:
    """A mix of lab tasks (task -> share of the steps): step s trains on one task, drawn from (seed, s)."""

    def __init__(self, tasks: dict[str, float], seed: int) -> None:
        self.tasks, self.seed = list(tasks), seed
        weights = np.array([float(tasks[t]) for t in self.tasks])
        self.shares = weights / weights.sum()
        self.exclude = held_out_keys(tuple(t for t in self.tasks if t in LAB_TASKS))

    def batch(self, step: int, size: int) -> list[Example]:
        task = self.tasks[int(np.random.default_rng([self.seed, step]).choice(len(self.tasks), p=self.shares))]
        return [Example(tuple(render(s) for s in item.images), item.text, item.answer)
                for item in train_items(task, self.seed, step, size, self.exclude)]


class FolderData:
    """A user's dataset folder: step s draws `size` training rows of one image count from (seed, s)."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder, self.seed = folder, seed
        self.rows = read_rows(folder, "train")
        read_rows(folder, "test")  # checked up front too: evaluation must not fail after training
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(self.rows):
            groups.setdefault(len(row["images"]), []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]
        self._images: dict[str, Image.Image] = {}

    def batch(self, step: int, size: int) -> list[Example]:
        rng = np.random.default_rng([self.seed, step])
        weights = np.array([len(g) for g in self.groups], dtype=float)
        group = self.groups[int(rng.choice(len(self.groups), p=weights / weights.sum()))]
        picked = rng.choice(group, size, replace=len(group) < size)
        return [self._example(self.rows[int(i)]) for i in picked]

    def _example(self, row: dict[str, Any]) -> Example:
        return Example(tuple(self._image(name) for name in row["images"]), row["question"], row["answer"])

    def _image(self, name: str) -> Image.Image:
        if name not in self._images:
            with Image.open(self.folder / name) as image:
                self._images[name] = image.convert("RGB")
        return self._images[name]


def read_rows(folder: Path, split: str) -> list[dict[str, Any]]:
    """The rows of `folder/<split>.jsonl`, normalised to {images, question, answer}; UserError naming the file
    and line of the first problem."""
    path = folder / f"{split}.jsonl"
    if not folder.is_dir():
        raise UserError(f"dataset folder {folder} does not exist")
    if not path.is_file():
        raise UserError(f"{path}: missing (a dataset folder holds train.jsonl and test.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        rows.append(_row(raw, where, folder))
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def _row(raw: Any, where: str, folder: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a row must be a JSON object with images, question and answer")
    unknown = sorted(set(raw) - {"image", "images", "question", "answer", "answers"})
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r} (fields: images or image, question, answer)")
    images = raw.get("images", [raw["image"]] if "image" in raw else None)
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise UserError(f"{where}: 'images' must be a non-empty list of file names (or 'image' one name)")
    for name in images:
        if not (folder / name).is_file():
            raise UserError(f"{where}: image {name!r} not found in {folder}")
    answers = raw.get("answers")
    if "answers" in raw and (not isinstance(answers, list) or not answers):
        raise UserError(f"{where}: 'answers' must be a non-empty list of strings (or 'answer' one string)")
    question, answer = raw.get("question"), raw["answer"] if "answer" in raw else (answers or [None])[0]
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(answer, str) or not answer.strip():
        raise UserError(f"{where}: 'answer' must be a non-empty string")
    placeholders = question.count("<image>")
    if placeholders not in (0, len(images)):
        raise UserError(f"{where}: the question holds {placeholders} <image> placeholders for {len(images)} images")
    return {"images": images, "question": question, "answer": answer}
