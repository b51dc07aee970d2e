"""Render one synthetic bar chart (ChartQA-like) with PIL directly; one question per chart.

Drawn: a centred bold title, a y axis with "nice" ticks and light grid lines, one vertical bar per category
with its exact value printed above it, and the category name under it. matplotlib is deliberately not used:
it is 10-50x slower per image here, and drawing directly gives exact control over where every label lands.
When the drawn font size does not leave every label room in its slot it is reduced one pixel at a time; the
record holds the size actually used.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from casa_eval.data.synthetic.chart_data import ChartContent, make_chart
from casa_eval.data.synthetic.rendering import Box, Rendered, doc_rng, draw_text, font, text_width
from casa_eval.data.synthetic.spec import SyntheticSpec

_MIN_FONT_PX = 8
Colour = tuple[int, int, int]
# A muted, colour-blind-friendly palette (seaborn "deep"); bars are never so light that they vanish on white.
_PALETTE: tuple[Colour, ...] = (
    (76, 114, 176),
    (221, 132, 82),
    (85, 168, 104),
    (196, 78, 82),
    (129, 114, 179),
    (147, 120, 96),
    (218, 139, 195),
    (100, 150, 170),
)
_INK: Colour = (30, 30, 30)
_AXIS: Colour = (90, 90, 90)
_GRID: Colour = (222, 222, 222)
_TICK_TEXT: Colour = (80, 80, 80)


@dataclass(frozen=True)
class _Style:
    colours: list[Colour]  # one per bar
    bar_fraction: float  # bar width / slot width
    grid: bool
    background: Colour


def _style(rng: random.Random, num_bars: int) -> _Style:
    # Mostly one colour per chart, sometimes one per bar (never needed to read it: values are printed).
    colours = rng.sample(_PALETTE, num_bars) if rng.random() < 0.3 else [rng.choice(_PALETTE)] * num_bars
    shade = rng.choice([255, 255, 252, 248])
    return _Style(colours, rng.uniform(0.45, 0.75), rng.random() < 0.7, (shade, shade, shade))


def render_chart(spec: SyntheticSpec, doc_id: int) -> Rendered:
    """Render chart `doc_id` of a `chartqa` spec; depends only on `(spec, doc_id)`.

    The record holds `question`, `answer` (the drawn value label, or a category name), `type`
    (`augmented_test` for value questions, `human_test` for highest/lowest), `question_kind`, `title`,
    `categories`, `values` (floats), `value_labels` (as drawn), and the difficulty values used: `font_size` (px)
    and `num_bars`. Raises ValueError when the spec's canvas cannot hold the labels even at 8 px.
    """
    num_bars = doc_rng(spec, doc_id, "bars").randint(spec.bars_min, spec.bars_max)
    content = make_chart(doc_rng(spec, doc_id, "content"), num_bars)
    style = _style(doc_rng(spec, doc_id, "style"), num_bars)
    requested = doc_rng(spec, doc_id, "font").randint(spec.font_size_min, spec.font_size_max)
    # Every random draw happens above: shrinking the font below must not change what the chart says.
    for size in range(requested, _MIN_FONT_PX - 1, -1):
        drawn = _draw(spec.image_width, spec.image_height, content, style, size)
        if drawn is not None:
            image, boxes = drawn
            break
    else:
        raise ValueError(f"a {spec.image_width}x{spec.image_height} chart cannot label {num_bars} bars legibly")
    record = {
        "question": content.question,
        "answer": content.answer,
        "type": content.answer_type,
        "question_kind": content.question_kind,
        "title": content.title,
        "categories": content.categories,
        "values": [float(v) for v in content.values],
        "value_labels": content.value_labels,
        "font_size": size,
        "num_bars": num_bars,
    }
    return Rendered(image, record, boxes)


def nice_ticks(top: float) -> list[float]:
    """Axis ticks 0, step, 2*step, ... covering `top`, with step 1, 2, 2.5 or 5 x 10^k and 3-5 intervals."""
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(k * step, 6) for k in range(count + 1)]


def _tick_label(value: float, step: float) -> str:
    decimals = next(d for d in range(4) if abs(round(step, d) - step) < 1e-9)
    return f"{value:.{decimals}f}"


def _draw(
    width: int, height: int, content: ChartContent, style: _Style, size: int
) -> tuple[Image.Image, list[Box]] | None:
    """The chart at font size `size` and its text boxes, or None if some label would not fit."""
    margin = max(12, round(min(width, height) * 0.04))
    title_font, label_font = font(round(size * 1.3), bold=True), font(size)
    tick_font = font(max(9, round(size * 0.85)))
    if text_width(content.title, title_font) > width - 2 * margin:
        return None
    ticks = nice_ticks(max(content.values))
    tick_labels = [_tick_label(t, ticks[1]) for t in ticks]
    label_h = sum(label_font.getmetrics())
    # The top tick sits low enough that the tallest bar's value label still clears the title.
    axis_top = margin + sum(title_font.getmetrics()) + size + label_h
    axis_bottom = height - margin - label_h - 6
    plot_left = margin + max(text_width(t, tick_font) for t in tick_labels) + 8
    plot_right = width - margin
    slot = (plot_right - plot_left) / len(content.values)
    room = slot - max(4, size // 2)  # keep neighbouring labels visibly apart
    if any(text_width(s, label_font) > room for s in [*content.categories, *content.value_labels]):
        return None
    if (axis_bottom - axis_top) / (len(ticks) - 1) < 1.5 * sum(tick_font.getmetrics()):
        return None

    image = Image.new("RGB", (width, height), style.background)
    draw = ImageDraw.Draw(image)
    boxes = [draw_text(draw, (width / 2, margin), content.title, title_font, _INK, anchor="mt")]

    def y_of(value: float) -> float:
        return axis_bottom - value / ticks[-1] * (axis_bottom - axis_top)

    for tick, label in zip(ticks, tick_labels, strict=True):
        y = round(y_of(tick))
        if style.grid and tick > 0:
            draw.line([(plot_left, y), (plot_right, y)], fill=_GRID, width=1)
        draw.line([(plot_left - 4, y), (plot_left, y)], fill=_AXIS, width=1)
        boxes.append(draw_text(draw, (plot_left - 7, y), label, tick_font, _TICK_TEXT, anchor="rm"))
    bar_w = max(3, round(slot * style.bar_fraction))
    for i, (value, category, label) in enumerate(
        zip(content.values, content.categories, content.value_labels, strict=True)
    ):
        centre = plot_left + slot * (i + 0.5)
        top = round(y_of(value))
        draw.rectangle([round(centre - bar_w / 2), top, round(centre + bar_w / 2), axis_bottom], fill=style.colours[i])
        boxes.append(draw_text(draw, (centre, top - 3), label, label_font, _INK, anchor="md"))
        boxes.append(draw_text(draw, (centre, axis_bottom + 6), category, label_font, _INK, anchor="mt"))
    draw.line([(plot_left, axis_top - 2), (plot_left, axis_bottom)], fill=_AXIS, width=1)
    draw.line([(plot_left, axis_bottom), (plot_right, axis_bottom)], fill=_AXIS, width=1)
    return image, boxes
