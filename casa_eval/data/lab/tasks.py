"""The lab tasks: small visual questions generated from a seed, each isolating one thing a fusion mechanism
must do, sized so the tiny lab models learn them on a 2-core CPU in minutes.

Every image is 32 x 32 px (64 patches of 4 x 4 px for the lab vision tower) and every answer is one of eight
colour names, so the chance level of an uninformed guess is 1/8 on every task.

* ``lab_fine_<d>`` (d = 1..4, *fine-grained*): a 4 x 4 grid of coloured glyphs; the question names one cell
  (rows A-D, columns 1-4, e.g. ``B3``) and asks its glyph's colour. The answer depends on one small region,
  chosen by the question. The difficulty knob is the glyph's side — 6, 4, 3, then 2 px in an 8 px cell — so
  the cell a question names covers the same pixels at every level and only the detail shrinks.
* ``lab_coarse`` (*coarse*): a mosaic of 8 x 8 cells where one colour holds 40-60 % of the cells and the
  rest are spread over the other seven; the question asks for the main colour. The answer depends on the
  image as a whole; no region matters on its own.
* ``lab_recall`` (*cross-image recall*): three mosaics in one conversation, each followed by its label
  (``image A``, ``image B``, ``image C``); after the third, the question asks the main colour of image A or B.
  Token insertion still holds the earlier image's tokens; CASA and the cross-attention family no longer see
  it (text attends only to its current window's image) and must have carried it in the text of the earlier
  window. The trade-off is measured here, not assumed.

Questions end with the token that selects the answer (the cell, or the image label), directly before the
answer: a tiny model learns a lookup that the question's last token drives within minutes, and one driven
by a token several positions back only after much longer training (docs/lab.md, "Why the tasks look like
this"). Images are drawn from item specs (a list of colour indices), never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

IMAGE = "<image>"  # where an image goes in a lab item's text (the adapter splits the prompt there)
IMAGE_SIZE = 32
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (230, 25, 75)), ("green", (60, 180, 75)), ("yellow", (255, 225, 25)), ("blue", (0, 130, 200)),
    ("orange", (245, 130, 48)), ("purple", (145, 30, 180)), ("cyan", (70, 240, 240)), ("pink", (240, 50, 230)),
)
COLOUR_NAMES = tuple(name for name, _ in COLOURS)
CHANCE = 1 / len(COLOURS)
GRID = 4  # fine-grained: 4 x 4 cells of 8 px
ROWS = "ABCD"
GLYPH_PX = {1: 6, 2: 4, 3: 3, 4: 2}  # fine-grained difficulty -> glyph side in px
MOSAIC = 8  # coarse and recall: 8 x 8 cells of 4 px
RECALL_IMAGES = ("A", "B", "C")
BACKGROUND = (255, 255, 255)
TEST_SEED = 20261203
TEST_ITEMS = 200


@dataclass(frozen=True)
class LabTask:
    name: str
    family: str  # fine | coarse | recall
    difficulty: int | None  # fine-grained only: 1 (easiest) .. 4
    isolates: str

    @property
    def chance(self) -> float:
        return CHANCE


LAB_TASKS: dict[str, LabTask] = {
    t.name: t
    for t in (
        *(LabTask(f"lab_fine_{d}", "fine", d, f"fine-grained local detail: the colour of one {px} px glyph in "
                                               "the cell the question names (4 x 4 grid)")
          for d, px in GLYPH_PX.items()),
        LabTask("lab_coarse", "coarse", None, "the image as a whole: the colour that covers most of a mosaic"),
        LabTask("lab_recall", "recall", None, "recall of an earlier image after later ones arrived: the main "
                                              "colour of image A or B, asked after image C"),
    )
}



@dataclass(frozen=True)
class LabItem:
    """One question: `text` holds one `<image>` per entry of `images` (each a drawable spec)."""

    task: str
    images: tuple[dict[str, Any], ...]
    text: str
    answer: str

    def key(self) -> str:
        """A digest of the content (what makes two items the same question about the same images)."""
        blob = json.dumps([self.task, self.images, self.text], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def to_doc(self) -> dict[str, Any]:
        return {"task": self.task, "images": json.dumps(self.images), "text": self.text, "answer": self.answer}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LabItem:
        images = json.loads(doc["images"]) if isinstance(doc["images"], str) else doc["images"]
        return cls(doc["task"], tuple(images), doc["text"], doc["answer"])


# ---------------------------------------------------------------------------------------------- drawing


def render(spec: dict[str, Any]) -> np.ndarray:
    """An image spec -> a 32 x 32 RGB uint8 array."""
    palette = np.array([rgb for _, rgb in COLOURS], dtype=np.uint8)
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    if spec["kind"] == "grid":
        cell, side = IMAGE_SIZE // GRID, int(spec["glyph"])
        offset = (cell - side) // 2
        for index, colour in enumerate(spec["colours"]):
            top, left = (index // GRID) * cell + offset, (index % GRID) * cell + offset
            image[top:top + side, left:left + side] = palette[colour]
    elif spec["kind"] == "mosaic":
        cell = IMAGE_SIZE // MOSAIC
        cells = palette[np.asarray(spec["colours"])].reshape(MOSAIC, MOSAIC, 3)
        image[:] = cells.repeat(cell, 0).repeat(cell, 1)
    else:
        raise ValueError(f"unknown lab image kind {spec['kind']!r}")
    return image


# ---------------------------------------------------------------------------------------------- items


def _mosaic(rng: np.random.Generator) -> tuple[dict[str, Any], int]:
    main = int(rng.integers(len(COLOURS)))
    cells = MOSAIC * MOSAIC
    count = int(rng.integers(round(0.4 * cells), round(0.6 * cells) + 1))
    others = [c for c in range(len(COLOURS)) if c != main]
    colours = np.array([main] * count + list(rng.choice(others, cells - count)))
    rng.shuffle(colours)
    return {"kind": "mosaic", "colours": [int(c) for c in colours]}, main


def make_item(task: str, rng: np.random.Generator) -> LabItem:
    """A random item of `task` drawn from `rng`."""
    spec = LAB_TASKS[task]
    if spec.family == "fine":
        assert spec.difficulty is not None
        colours = [int(c) for c in rng.integers(len(COLOURS), size=GRID * GRID)]
        cell = int(rng.integers(GRID * GRID))
        address = f"{ROWS[cell // GRID]}{cell % GRID + 1}"
        image = {"kind": "grid", "colours": colours, "glyph": GLYPH_PX[spec.difficulty]}
        return LabItem(task, (image,), f"{IMAGE}colour {address}",
                       COLOUR_NAMES[colours[cell]])
    if spec.family == "coarse":
        image, main = _mosaic(rng)
        return LabItem(task, (image,), f"{IMAGE}colour", COLOUR_NAMES[main])
    mosaics = [_mosaic(rng) for _ in RECALL_IMAGES]
    asked = int(rng.integers(len(RECALL_IMAGES) - 1))  # an earlier image, never the last one
    labelled = "".join(f"{IMAGE}image {label}" for label in RECALL_IMAGES)
    return LabItem(task, tuple(m for m, _ in mosaics),
                   f"{labelled} colour {RECALL_IMAGES[asked]}",
                   COLOUR_NAMES[mosaics[asked][1]])


def held_out(task: str, n: int = TEST_ITEMS, seed: int = TEST_SEED) -> list[LabItem]:
    """The test split of `task`: `n` items drawn from `seed` (fixed: the same items on every machine)."""
    rng = np.random.default_rng([seed, _task_number(task)])
    return [make_item(task, rng) for _ in range(n)]


def held_out_keys(tasks: list[str] | tuple[str, ...] | None = None) -> frozenset[str]:
    """Content digests of every test item of `tasks` (default all): training never draws one of them."""
    return frozenset(item.key() for t in (tasks or LAB_TASKS) for item in held_out(t))


def train_items(task: str, seed: int, step: int, count: int, exclude: frozenset[str]) -> Iterator[LabItem]:
    """`count` training items of `task` for optimiser step `step` of a run seeded with `seed`. The stream
    depends only on (seed, task, step), so a resumed run draws exactly what an uninterrupted one would; an
    item equal to a test item is skipped, so the splits are disjoint."""
    rng = np.random.default_rng([seed, _task_number(task), step, 1])
    made = 0
    while made < count:
        item = make_item(task, rng)
        if item.key() in exclude:
            continue
        made += 1
        yield item


def _task_number(task: str) -> int:
    return list(LAB_TASKS).index(task)


def tokenizer_corpus(items_per_task: int = 400, seed: int = 7) -> list[str]:
    """The text the lab tokenizer is trained on: every task's questions and answers, plus the zoo's chat
    markers and a little plain English so a user's own questions do not fall apart into bytes."""
    rng = np.random.default_rng(seed)
    texts = [item.text.replace(IMAGE, "\n") + " " + item.answer
             for task in LAB_TASKS for item in (make_item(task, rng) for _ in range(items_per_task))]
    texts += [f"{row}{col}" for row in ROWS for col in range(1, GRID + 1)] * 50
    texts += [" ".join(COLOUR_NAMES)] * 50
    texts += ["<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", "Describe the frame.",
              "What is the value? Which one is the largest? How many are there? Answer the question using a "
              "single word or phrase. What is shown in the picture? Is there a person in the image? yes no"] * 20
    return texts
