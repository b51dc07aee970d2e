"""Synthetic forms: answerable questions, clean layout, and difficulty knobs that change the page."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from casa_eval.data.synthetic.documents import render_document
from casa_eval.data.synthetic.forms import answer_variants
from casa_eval.data.synthetic.generate import render_png
from casa_eval.data.synthetic.rendering import Rendered, boxes_overlap
from casa_eval.data.synthetic.spec import MAX_FIELDS, SyntheticSpec


def test_question_asks_for_exactly_one_drawn_field_and_the_answer_is_its_value() -> None:
    spec = SyntheticSpec(kind="docvqa", seed=3, num_docs=40)
    for doc_id in range(spec.num_docs):
        record = render_document(spec, doc_id).record
        labels = [f["label"] for f in record["fields"]]
        assert len(labels) == len(set(labels)) == record["num_fields"]
        asked = next(f for f in record["fields"] if f["label"] == record["question_label"])
        assert record["answers"][0] == asked["value"]
        assert record["answers"] == answer_variants(asked["value"])
        assert record["question"].endswith("?")


def test_answer_variants_drop_separators_and_units() -> None:
    assert answer_variants("1,284.50") == ["1,284.50", "1284.50"]
    assert answer_variants("12.4 kg") == ["12.4 kg", "12.4"]
    assert answer_variants("Alvarez & Co") == ["Alvarez & Co"]


@pytest.mark.parametrize(
    "difficulty",
    [
        {"fields_min": MAX_FIELDS, "fields_max": MAX_FIELDS, "font_size_min": 20, "font_size_max": 20},
        {"fields_min": 1, "fields_max": 3, "font_size_min": 8, "font_size_max": 9},
        {"image_width": 400, "image_height": 520, "fields_min": 8, "fields_max": 10},
    ],
)
def test_text_stays_on_the_page_and_never_overlaps(difficulty: dict[str, int]) -> None:
    spec = SyntheticSpec.model_validate({"kind": "docvqa", "seed": 11, "num_docs": 30, **difficulty})
    for doc_id in range(spec.num_docs):
        rendered = render_document(spec, doc_id)
        width, height = rendered.image.size
        assert (width, height) == (spec.image_width, spec.image_height)
        for box in rendered.text_boxes:
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height, (doc_id, box)
        for a, b in itertools.combinations(rendered.text_boxes, 2):
            assert not boxes_overlap(a, b), (doc_id, a, b)


def _ink_fraction(rendered: Rendered) -> float:
    return float((np.asarray(rendered.image) < 128).mean())


def test_more_fields_draw_more_text() -> None:
    few = SyntheticSpec(kind="docvqa", seed=5, fields_min=2, fields_max=2)
    many = few.model_copy(update={"fields_min": MAX_FIELDS, "fields_max": MAX_FIELDS})
    sparse, dense = [render_document(few, i) for i in range(12)], [render_document(many, i) for i in range(12)]
    assert {r.record["num_fields"] for r in sparse} == {2} and {r.record["num_fields"] for r in dense} == {MAX_FIELDS}
    # Same forms and styles, only the number of drawn fields differs (an items table may no longer fit).
    assert [r.record["title"] for r in sparse] == [r.record["title"] for r in dense]
    assert np.mean([len(r.text_boxes) for r in dense]) > np.mean([len(r.text_boxes) for r in sparse]) + 10
    assert np.mean([_ink_fraction(r) for r in dense]) > np.mean([_ink_fraction(r) for r in sparse])


def test_larger_font_draws_taller_text() -> None:
    small = SyntheticSpec(kind="docvqa", seed=5, font_size_min=10, font_size_max=10)
    large = small.model_copy(update={"font_size_min": 20, "font_size_max": 20})
    for doc_id in range(10):
        a, b = render_document(small, doc_id), render_document(large, doc_id)
        assert (a.record["font_size"], b.record["font_size"]) == (10, 20)
        assert a.record["question"] == b.record["question"]  # the knob changes the look, not the content
        tallest = [max(box[3] - box[1] for box in r.text_boxes) for r in (a, b)]
        assert tallest[1] > 1.6 * tallest[0]


def test_same_spec_and_doc_give_identical_png_bytes() -> None:
    spec = SyntheticSpec(kind="docvqa", seed=9, num_docs=4)
    assert render_png(spec, 2) == render_png(spec, 2)
    assert render_png(spec, 2)[0] != render_png(spec, 3)[0]
