"""Synthetic bar charts: answers read off the record match the bars drawn, and the knobs change the chart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from lmms_eval.tasks.chartqa.utils import relaxed_correctness

from casa_eval.data.synthetic.charts import nice_ticks, render_chart
from casa_eval.data.synthetic.rendering import Rendered, boxes_overlap
from casa_eval.data.synthetic.spec import MAX_BARS, SyntheticSpec


def _bars(rendered: Rendered) -> list[tuple[int, int]]:
    """(x centre, height in px) of every bar, found from the pixels alone: bars are the only saturated colour,
    and the row just above the x axis crosses all of them."""
    rgb = np.asarray(rendered.image).astype(int)
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 40
    best_row, best_runs = 0, list[tuple[int, int]]()
    for y in range(rgb.shape[0]):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], saturated[y].astype(int), [0]])))
        runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        if len(runs) >= len(best_runs):  # ties: prefer the lowest row, just above the axis
            best_row, best_runs = y, runs
    bars = []
    for start, stop in best_runs:
        x = (start + stop) // 2
        column = saturated[: best_row + 1, x]
        top = best_row - int(np.argmin(column[::-1])) + 1
        bars.append((x, best_row - top + 1))
    return bars


def test_answers_match_the_record_and_the_bars_drawn() -> None:
    spec = SyntheticSpec(kind="chartqa", seed=2, num_docs=40)
    kinds = set()
    for doc_id in range(spec.num_docs):
        rendered = render_chart(spec, doc_id)
        record = rendered.record
        values, categories = record["values"], record["categories"]
        assert len(set(values)) == len(values) == record["num_bars"] and min(values) > 0
        assert record["value_labels"] == [
            f"{v:.{len(lb.partition('.')[2])}f}" for v, lb in zip(values, record["value_labels"], strict=True)
        ]
        kinds.add(record["question_kind"])
        if record["question_kind"] == "value":
            (asked,) = [c for c in categories if c in record["question"]]
            assert record["answer"] == record["value_labels"][categories.index(asked)]
            assert record["type"] == "augmented_test"
        else:
            pick = max if record["question_kind"] == "highest" else min
            assert record["answer"] == categories[values.index(pick(values))]
            assert record["question_kind"] in record["question"] and record["type"] == "human_test"
        # The bars in the picture: one per value, in order, heights proportional to the values.
        bars = _bars(rendered)
        assert len(bars) == len(values), doc_id
        scale = bars[values.index(max(values))][1] / max(values)
        for (_, height), value in zip(bars, values, strict=True):
            assert abs(height - value * scale) <= 2, (doc_id, height, value)
    assert kinds == {"value", "highest", "lowest"}


def test_label_answers_are_never_scored_as_numbers() -> None:
    # relaxed_correctness gives numbers 5% slack; a category must not be a number, or "Jun" ~ "Jul" would pass.
    spec = SyntheticSpec(kind="chartqa", seed=4, num_docs=60)
    for doc_id in range(spec.num_docs):
        record = render_chart(spec, doc_id).record
        for category in record["categories"]:
            with pytest.raises(ValueError):
                float(category)
        if record["type"] == "augmented_test":
            wrong = f"{float(record['answer']) * 1.1:.2f}"
            assert relaxed_correctness(record["answer"], record["answer"])
            assert not relaxed_correctness(wrong, record["answer"])


@pytest.mark.parametrize(
    "difficulty", [{"bars_min": MAX_BARS, "font_size_min": 15, "font_size_max": 15}, {"bars_min": 2, "bars_max": 2}]
)
def test_text_stays_on_the_canvas_and_never_overlaps(difficulty: dict[str, int]) -> None:
    spec = SyntheticSpec.model_validate({"kind": "chartqa", "seed": 6, "num_docs": 30, **difficulty})
    for doc_id in range(spec.num_docs):
        rendered = render_chart(spec, doc_id)
        width, height = rendered.image.size
        for box in rendered.text_boxes:
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height, (doc_id, box)
        for a, b in itertools.combinations(rendered.text_boxes, 2):
            assert not boxes_overlap(a, b), (doc_id, a, b)


def test_bar_count_and_font_size_knobs_change_the_chart() -> None:
    few = SyntheticSpec(kind="chartqa", seed=8, bars_min=3, bars_max=3, font_size_min=11, font_size_max=11)
    many = few.model_copy(update={"bars_min": 8, "bars_max": 8, "font_size_min": 15, "font_size_max": 15})
    for doc_id in range(8):
        a, b = render_chart(few, doc_id), render_chart(many, doc_id)
        assert (a.record["num_bars"], b.record["num_bars"]) == (3, 8)
        assert (len(_bars(a)), len(_bars(b))) == (3, 8)
        # 15 px is the request; long labels in narrow slots may be drawn a pixel or two smaller.
        assert a.record["font_size"] == 11 and 11 < b.record["font_size"] <= 15
        tallest = [max(box[3] - box[1] for box in r.text_boxes) for r in (a, b)]
        assert tallest[1] > tallest[0]


@pytest.mark.parametrize("top", [1.0, 7.3, 18, 20, 99.9, 250, 2499])
def test_nice_ticks_cover_the_data_in_3_to_5_steps(top: float) -> None:
    ticks = nice_ticks(top)
    assert ticks[0] == 0 and ticks[-1] >= top and 3 <= len(ticks) - 1 <= 5
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
