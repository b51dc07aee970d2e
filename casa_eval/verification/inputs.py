"""The built-in conversations `casa-eval verify` runs: deterministic pictures drawn with PIL (no downloads) and
short questions, one single-turn conversation and one of two turns.

The pictures differ in size and aspect ratio on purpose: Qwen2.5-VL gives them different patch grids (and token
counts), so a position or token-count bug cannot hide behind one square frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Turn:
    """One user turn: an image, then a question about it."""

    image: Image.Image
    question: str


@dataclass(frozen=True)
class Conversation:
    name: str
    turns: tuple[Turn, ...]


def picture(seed: int, width: int, height: int, label: str) -> Image.Image:
    """A deterministic RGB picture: a smooth colour field, a few shapes and a line of text."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    phases = rng.uniform(0, 2 * np.pi, 3)
    field = np.stack([0.5 + 0.5 * np.sin(6 * x + 4 * y + p) for p in phases], -1)
    image = Image.fromarray((field * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + int(rng.integers(width // 8, width // 2)), y0 + int(rng.integers(height // 8, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    draw.text((4, height // 2), label, fill=(0, 0, 0))
    return image


def conversations() -> list[Conversation]:
    """The single-turn and the two-turn conversation (the second turn brings a new image)."""
    invoice = picture(1, 128, 96, "INV-42")
    chart = picture(2, 112, 112, "Q3 +12%")
    street = picture(3, 84, 126, "EXIT 7")
    return [
        Conversation("single", (Turn(invoice, "What is the invoice number?"),)),
        Conversation("multi", (Turn(chart, "Describe the image."),
                               Turn(street, "And this one, what changed?"))),
    ]
