"""The casa-paper tasks as lmms-eval loads them: every prompt pinned by a committed snapshot, and every scorer
checked against the reference implementation it reproduces, on the same predictions.

Regenerate the snapshot after an intended protocol change with `CASA_EVAL_UPDATE_SNAPSHOTS=1 uv run pytest
tests/data/test_casa_paper.py` and review the diff: a changed prompt invalidates that benchmark's numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from casa_eval.data import casa_paper
from tests.data.conftest import CASA_PAPER_TASKS, PaperTask

SNAPSHOT = Path(__file__).parent / "snapshots" / "casa_paper_prompts.json"


def _protocol(paper: PaperTask) -> dict[str, Any]:
    config = paper.task.config
    return {
        "prompts": [paper.task.doc_to_text(doc) for doc in (paper.docs[0], paper.docs[1])],
        "generation_kwargs": dict(config.generation_kwargs),
        "metrics": [m["metric"] for m in config.metric_list],
        "image_size": config.metadata["image_size"],
        "protocol": config.metadata["prompt_profile"],
    }


def test_every_prompt_matches_the_committed_snapshot(paper_tasks: dict[str, PaperTask]) -> None:
    actual = {name: _protocol(paper_tasks[name]) for name in CASA_PAPER_TASKS}
    if os.environ.get("CASA_EVAL_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert sorted(expected) == sorted(CASA_PAPER_TASKS)
    for name in CASA_PAPER_TASKS:
        assert actual[name] == expected[name], name


def test_all_tasks_decode_greedily_for_128_tokens_without_stop_strings(paper_tasks: dict[str, PaperTask]) -> None:
    for name in CASA_PAPER_TASKS:
        kwargs = paper_tasks[name].task.config.generation_kwargs
        assert kwargs["max_new_tokens"] == 128 and kwargs["do_sample"] is False and kwargs["until"] == [], name


@pytest.mark.parametrize(("question", "options", "expected"), [
    ("Which stage comes after egg", ["larva", "adult"],
     "Question: Which stage comes after egg?\nChoices:\nA. larva\nB. adult\nAnswer with the letter."),
    ("Label the stage.", ["egg", "larva", "pupa"],
     "Question: Label the stage.\nChoices:\nA. egg\nB. larva\nC. pupa\nAnswer with the letter."),
    # Kyutai tests the stripped question's last character but keeps the question as it is.
    ("What eats grass? ", ["cow"], "Question: What eats grass? \nChoices:\nA. cow\nAnswer with the letter."),
])
def test_ai2d_prompt_adds_a_question_mark_only_when_needed(question: str, options: list[str], expected: str) -> None:
    assert casa_paper.ai2d_prompt({"question": question, "options": options}) == expected


def test_images_reach_the_model_as_rgb(paper_tasks: dict[str, PaperTask]) -> None:
    for name in CASA_PAPER_TASKS:
        paper = paper_tasks[name]
        (image,) = paper.task.doc_to_visual(paper.docs[0])
        assert image.mode == "RGB" and image.size == (96, 96), name


def test_gqa_documents_carry_the_image_joined_from_the_images_config(paper_tasks: dict[str, PaperTask]) -> None:
    docs = paper_tasks["casa_gqa"].docs
    assert len(docs) == 4
    # rows 0 and 2 share image img0, rows 1 and 3 image img1: same pixels within a pair, different across
    first, second, third = (docs[i]["image"].tobytes() for i in (0, 1, 2))
    assert first == third and first != second


# ------------------------------------------------------------------------------------------------ scoring
# (prediction, references, expected score): expected values worked out by hand from each metric's definition.

ANLS_CASES = [
    ("INV-7", ["INV-7", "inv 7"], 1.0),
    ("INV-7.", ["INV-7"], 1.0),  # Kyutai strips the trailing full stop before scoring
    ("  inv-7 ", ["INV-7"], 1.0),  # and surrounding space; ANLS* is case-insensitive
    ("INV-1", ["INV-7"], 0.8),  # one edit in five characters
    ("INV", ["INV-7"], 0.6),  # two deletions in five characters
    ("nothing alike", ["INV-7"], 0.0),  # normalised distance above 0.5 scores 0
    ("Paris", ["London", "paris"], 1.0),  # best over the reference answers
]

RELAXED_CASES = [
    ("10.4", "10", 1.0),  # within 5 %
    ("10.6", "10", 0.0),  # 6 % off
    ("10.", "10", 1.0),  # trailing "." stripped
    ("12%", "0.12", 1.0),  # a percentage is read as a fraction
    ("12%", "12", 0.0),
    ("Yes", "yes", 1.0),  # strings: case-insensitive exact match
    ("Yes.", "yes", 1.0),
    ("blue bars", "blue", 0.0),
]


@pytest.mark.parametrize(("prediction", "answers", "expected"), ANLS_CASES)
def test_docvqa_and_infovqa_score_anls_star_as_the_reference_does(
        paper_tasks: dict[str, PaperTask], prediction: str, answers: list[str], expected: float) -> None:
    from anls_star import anls_score

    reference = anls_score(gt=answers, pred=prediction.rstrip(".").strip())
    reference = reference[0] if isinstance(reference, tuple) else reference
    assert reference == pytest.approx(expected)
    for name in ("casa_docvqa", "casa_infovqa"):
        doc = dict(paper_tasks[name].docs[0], answers=answers)
        assert paper_tasks[name].task.process_results(doc, [prediction]) == {"anls_star": pytest.approx(expected)}


@pytest.mark.parametrize(("prediction", "answer", "expected"), RELAXED_CASES)
def test_chartqa_scores_relaxed_accuracy_as_the_reference_does(
        paper_tasks: dict[str, PaperTask], prediction: str, answer: str, expected: float) -> None:
    from lmms_eval.tasks.chartqa.utils import relaxed_correctness

    assert float(relaxed_correctness(prediction.rstrip("."), answer)) == expected
    doc = dict(paper_tasks["casa_chartqa"].docs[0], answer=answer)
    assert paper_tasks["casa_chartqa"].task.process_results(doc, [prediction]) == {"relaxed_overall": expected}


def test_ocrbench_counts_the_reference_as_a_substring(paper_tasks: dict[str, PaperTask]) -> None:
    paper = paper_tasks["casa_ocrbench"]
    doc = paper.docs[0]  # answer ["word0"]
    assert paper.task.process_results(doc, ["The text reads WORD0."]) == {"ocrbench_accuracy": 1.0}
    assert paper.task.process_results(doc, ["word1"]) == {"ocrbench_accuracy": 0.0}


def test_textvqa_uses_vqa_accuracy(paper_tasks: dict[str, PaperTask]) -> None:
    paper = paper_tasks["casa_textvqa"]
    doc = dict(paper.docs[0], answers=["coke"] * 2 + ["pepsi"] * 8)
    score = paper.task.process_results
    # VQA accuracy: min(1, matches / 3), averaged over the ten leave-one-out subsets of annotators.
    assert score(doc, ["pepsi"]) == {"exact_match": pytest.approx(1.0)}
    assert score(doc, ["coke"]) == {"exact_match": pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)}
    assert score(doc, ["fanta"]) == {"exact_match": 0.0}


def test_realworldqa_strips_the_trailing_full_stop(paper_tasks: dict[str, PaperTask]) -> None:
    paper = paper_tasks["casa_realworldqa"]
    doc = paper.docs[0]  # answer "B"
    assert paper.task.process_results(doc, ["B."]) == {"exact_match": 1.0}
    assert paper.task.process_results(doc, ["A"]) == {"exact_match": 0.0}


@pytest.mark.parametrize(("prediction", "expected"), [
    ("B", 1.0), ("B. larva", 1.0), ("Answer: B", 1.0), ("A", 0.0),
    # Kyutai's call of the regex filter iterates over the response's characters and keeps the first (0.7.3):
    ("The answer is B", 0.0), ("b", 0.0),
    (" B", 1.0),  # lmms-eval strips every response before scoring
])
def test_ai2d_reproduces_kyutais_letter_matching(paper_tasks: dict[str, PaperTask], prediction: str,
                                                 expected: float) -> None:
    paper = paper_tasks["casa_ai2d"]
    doc = dict(paper.docs[0], answer="1")  # option index 1 -> letter B
    assert paper.task.process_results(doc, [prediction]) == {"exact_match": expected}


def test_gqa_normalises_case_space_and_punctuation(paper_tasks: dict[str, PaperTask]) -> None:
    paper = paper_tasks["casa_gqa"]
    doc = dict(paper.docs[0], answer="blue")
    assert paper.task.process_results(doc, [" Blue."]) == {"exact_match": 1.0}
    assert paper.task.process_results(doc, ["light blue"]) == {"exact_match": 0.0}


def test_mme_total_is_the_sum_of_accuracy_and_accuracy_plus_over_categories(
        paper_tasks: dict[str, PaperTask]) -> None:
    paper = paper_tasks["casa_mme"]
    docs = paper.docs  # two image pairs of the "artwork" category: (Yes, No), (Yes, No)
    answers = ["Yes", "No", "Yes", "Yes"]  # pair 0 fully right, pair 1 half right
    items = [paper.task.process_results(doc, [a])["mme_total"] for doc, a in zip(docs, answers, strict=True)]
    # accuracy 3/4 = 75, accuracy+ (both of a pair right) 1/2 = 50 -> 125 for the one category
    assert casa_paper.mme_total_aggregate(items) == pytest.approx(125.0)
    # a pair cut in half by --limit is left out rather than failing lmms-eval's pairwise assertion
    assert casa_paper.mme_total_aggregate(items[:3]) == pytest.approx(200.0)
    accuracy = [paper.task.process_results(doc, [a])["mme_accuracy"] for doc, a in zip(docs, answers, strict=True)]
    assert accuracy == [1.0, 1.0, 1.0, 0.0]
