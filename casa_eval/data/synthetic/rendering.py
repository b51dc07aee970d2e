"""Pieces both renderers share: the per-document RNG, fonts, text measurement and the render result."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from casa_eval.data.synthetic.spec import SyntheticSpec

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right/bottom exclusive


@dataclass(frozen=True)
class Rendered:
    """One rendered document: its image, its record (question, answer(s), content and difficulty values,
    JSON-serialisable, without `doc_id`/`image_path`), and the pixel box of every text item drawn (tests use
    the boxes to check that nothing overlaps or leaves the canvas)."""

    image: Image.Image
    record: dict[str, Any]
    text_boxes: list[Box] = field(default_factory=list)


def doc_rng(spec: SyntheticSpec, doc_id: int, stream: str) -> random.Random:
    """A generator owned by one document and one aspect of it (`stream`: "content", "style", "font", ...),
    seeded from `(spec.kind, spec.seed, doc_id, stream)` only.

    Depending on nothing else lets the cache re-render one document alone. Separate streams keep the knobs
    independent: changing the font-size range changes only font sizes, not which fields a form shows.
    Hashing (rather than `seed + doc_id`) keeps neighbouring seeds from sharing documents.
    """
    digest = hashlib.sha256(f"{spec.kind}:{spec.seed}:{doc_id}:{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _font_path(bold: bool) -> str:
    # matplotlib bundles DejaVu Sans, so rendering needs no system fonts (and so no font-dependent output).
    # `matplotlib.get_data_path()` is `<package>/mpl-data`; finding the package without importing it saves
    # ~0.9 s in every render worker process. The import is the fallback should that layout ever change.
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    found = importlib.util.find_spec("matplotlib")
    if found is not None and found.submodule_search_locations:
        path = os.path.join(next(iter(found.submodule_search_locations)), "mpl-data", "fonts", "ttf", name)
        if os.path.isfile(path):
            return path
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


@lru_cache(maxsize=128)
def font(size_px: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (or Sans Bold) at `size_px` pixels, cached per process."""
    # The basic layout engine, not raqm: ~30% faster for this Latin-only text, and the pixels then do not
    # depend on whether this Pillow build happens to ship libraqm/HarfBuzz.
    return ImageFont.truetype(_font_path(bold), size_px, layout_engine=ImageFont.Layout.BASIC)


def draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    fnt: ImageFont.FreeTypeFont,
    fill: int | tuple[int, int, int],
    anchor: str = "la",
) -> Box:
    """Draw `text` at `xy` (PIL `anchor`, default left/ascender) and return its pixel box."""
    draw.text(xy, text, font=fnt, fill=fill, anchor=anchor)
    left, top, right, bottom = draw.textbbox(xy, text, font=fnt, anchor=anchor)
    return int(left), int(top), int(right), int(bottom)


def text_width(text: str, fnt: ImageFont.FreeTypeFont) -> int:
    """Advance width of `text` in pixels (what the next item placed after it must clear)."""
    return round(fnt.getlength(text))


def boxes_overlap(a: Box, b: Box) -> bool:
    """True when two boxes share at least one pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
