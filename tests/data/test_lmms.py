"""End to end: lmms-eval 0.7.3 loads both tasks offline from `tasks/` and scores perfect answers 1.0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

from casa_eval.data.synthetic.lmms import process_docs
from casa_eval.data.synthetic.spec import SyntheticSpec

TASKS = {"synth_docvqa": (612, 792), "synth_chartqa": (640, 480)}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_loads_600_docs_with_readable_images(name: str, lmms_tasks: dict[str, Any]) -> None:
    task = lmms_tasks[name]
    docs = task.test_docs()
    assert len(docs) == 600
    assert docs["doc_id"] == list(range(600))
    for doc in (docs[0], docs[299], docs[599]):
        assert Path(doc["image_path"]).is_absolute()
        (image,) = task.doc_to_visual(doc)
        assert image.mode == "RGB" and image.size == TASKS[name]
        prompt = task.doc_to_text(doc)
        assert prompt.startswith(doc["question"]) and prompt.endswith(".") and "\nAnswer the question" in prompt


def test_docvqa_scoring_gives_anls_1_for_exact_answers_and_0_for_wrong_ones(lmms_tasks: dict[str, Any]) -> None:
    task = lmms_tasks["synth_docvqa"]
    docs = task.test_docs()
    assert all(task.process_results(doc, [doc["answers"][0]]) == {"anls": 1.0} for doc in docs)
    # The normalised variant counts too, and something unrelated does not.
    with_variant = next(doc for doc in docs if len(doc["answers"]) > 1)
    assert task.process_results(with_variant, [with_variant["answers"][1]]) == {"anls": 1.0}
    assert task.process_results(docs[0], ["zzzzzzzzzzzzzzzzzzzz"]) == {"anls": 0.0}


def test_chartqa_scoring_gives_relaxed_1_for_exact_answers_on_both_splits(lmms_tasks: dict[str, Any]) -> None:
    task = lmms_tasks["synth_chartqa"]
    docs = task.test_docs()
    scores = [task.process_results(doc, [doc["answer"]]) for doc in docs]
    assert all(s["relaxed_overall"] == 1.0 for s in scores)
    human = sum("relaxed_human_split" in s for s in scores)
    augmented = sum("relaxed_augmented_split" in s for s in scores)
    assert human + augmented == 600 and min(human, augmented) > 100
    assert task.process_results(docs[0], ["no idea"])["relaxed_overall"] == 0.0


def test_process_docs_needs_exactly_one_spec_row() -> None:
    spec = SyntheticSpec(kind="docvqa", seed=0, num_docs=2).model_dump(mode="json")
    with pytest.raises(ValueError, match="exactly one spec row"):
        process_docs(datasets.Dataset.from_list([spec, spec]))
