"""The casa-paper protocol: Kyutai's evaluation of CASA, as lmms-eval task hooks.

Reproduces `kyutai-labs/casa` `scripts/eval.py` (commit 2e03327, the script behind the README's 896 px
table): the same prompt strings (`format_question`), the same post-processing (a trailing "." stripped for
most benchmarks), the same scorers (ANLS* from the `anls_star` package for DocVQA/InfoVQA, lmms-eval's
`process_results` elsewhere, a normalised exact match for GQA) and the same aggregation (MME: one sum over
all 14 categories). Kyutai ran lmms-eval from git HEAD, unpinned; casa-eval runs these functions on the
pinned lmms-eval 0.7.3. Every difference from lmms-eval's own tasks is listed in docs/casa_paper.md.
"""

from __future__ import annotations

import re
import string
import warnings
from typing import Any

from PIL import Image

SHORT_ANSWER = "Answer the question using a single word or phrase."
OCRBENCH_SUFFIX = "Please directly answer the question."


# ---------------------------------------------------------------------------------------------- prompts


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [doc["image"].convert("RGB")]


def short_answer_prompt(doc: dict[str, Any]) -> str:
    """ChartQA, DocVQA, InfoVQA, TextVQA, RealWorldQA, GQA: `{question}\\nAnswer the question using a single
    word or phrase.` (RealWorldQA's question keeps its own options and instruction, as in Kyutai's script)."""
    return f"{doc['question']}\n{SHORT_ANSWER}"


def ocrbench_prompt(doc: dict[str, Any]) -> str:
    return f"{doc['question']}\n{OCRBENCH_SUFFIX}"


def ai2d_prompt(doc: dict[str, Any]) -> str:
    """`Question: {question}\\nChoices:\\nA. ...\\nB. ...\\nAnswer with the letter.` ("?" added when the
    question ends with neither "?" nor ".")."""
    question = doc["question"]
    if question.strip()[-1] not in {"?", "."}:
        question += "?"
    options = "\n".join(f"{chr(65 + i)}. {opt}" for i, opt in enumerate(doc["options"]))
    return f"Question: {question}\nChoices:\n{options}\nAnswer with the letter."


def mme_prompt(doc: dict[str, Any]) -> str:
    """MME's own question (which ends with "Please answer yes or no.") plus the short-answer instruction."""
    return f"{doc['question'].strip()}\n{SHORT_ANSWER}"


# ---------------------------------------------------------------------------------------------- scoring


def _strip_dot(prediction: str) -> str:
    return prediction.rstrip(".")


def chartqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Relaxed accuracy (numbers within 5 %, else case-insensitive exact match) on the prediction without a
    trailing "." — lmms-eval's `chartqa_process_results`, as Kyutai calls it."""
    from lmms_eval.tasks.chartqa.utils import chartqa_process_results as lmms_chartqa

    return {"relaxed_overall": float(lmms_chartqa(doc, [_strip_dot(results[0])])["relaxed_overall"])}


def anls_star_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """ANLS* (`anls_star.anls_score`) of the prediction without a trailing "." and surrounding space, against
    every reference answer (DocVQA, InfoVQA)."""
    from anls_star import anls_score

    prediction = _strip_dot(results[0]).strip()
    with warnings.catch_warnings():  # "treating ground truth as a list of options": that is the intent here
        warnings.simplefilter("ignore", UserWarning)
        score = anls_score(gt=list(doc["answers"]), pred=prediction)
    return {"anls_star": float(score[0] if isinstance(score, tuple) else score)}


def ocrbench_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lmms-eval's OCRBench match (the reference answer is a substring of the prediction), per sample.
    lmms-eval's own aggregation divides by a fixed 1000; the mean here equals it on the full 1000-item set
    and stays valid under `--limit`."""
    from lmms_eval.tasks.ocrbench.utils import ocrbench_process_results as lmms_ocrbench

    scored = lmms_ocrbench(doc, [_strip_dot(results[0])])["ocrbench_accuracy"]
    return {"ocrbench_accuracy": float(scored["score"])}


def textvqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """VQA accuracy (lmms-eval's `textvqa_process_results`); Kyutai applies no post-processing here."""
    from lmms_eval.tasks.textvqa.utils import textvqa_process_results as lmms_textvqa

    return {"exact_match": float(lmms_textvqa(doc, results)["exact_match"])}


def realworldqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    from lmms_eval.tasks.realworldqa.utils import realworldqa_process_results as lmms_realworldqa

    return {"exact_match": float(lmms_realworldqa(doc, [_strip_dot(results[0])])["exact_match"])}


def ai2d_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Kyutai's AI2D scorer: drop a leading "Answer: ", then lmms-eval's `MultiChoiceRegexFilter` called the
    way their script calls it, against `ai2d_doc_to_target(doc, "mcq")`. With lmms-eval 0.7.3 that call
    iterates over the characters of the response, so it compares the response's first character with the
    answer letter ("B. a dog" and "B" score, "The answer is B" does not)."""
    from lmms_eval.tasks.ai2d.utils import MultiChoiceRegexFilter, ai2d_doc_to_target

    prediction = re.sub("^Answer: ", "", results[0])
    ai2d_filter = MultiChoiceRegexFilter(group_select=0, ignore_case=True, ignore_punctuation=True,
                                         regex_pattern="([A-Z])\\.")
    filtered = ai2d_filter.apply([prediction], [doc])
    return {"exact_match": 1.0 if ai2d_doc_to_target(doc, "mcq") == filtered[0] else 0.0}


def _normalise(text: str) -> str:
    return text.strip().lower().translate(str.maketrans("", "", string.punctuation))


def gqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Exact match after stripping, lower-casing and removing punctuation (Kyutai's GQA scorer)."""
    return {"exact_match": 1.0 if _normalise(results[0]) == _normalise(doc["answer"]) else 0.0}


def mme_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """`mme_total` feeds lmms-eval's MME aggregation (perception and cognition together, as Kyutai reports);
    `mme_accuracy` is the per-question correctness, for uncertainty and the sample view."""
    from lmms_eval.tasks.mme.utils import mme_process_results as lmms_mme

    scored = lmms_mme(doc, results)
    item = scored.get("mme_perception_score") or scored["mme_cognition_score"]
    return {"mme_total": item, "mme_accuracy": float(item["score"])}


def mme_total_aggregate(items: list[dict[str, Any]]) -> float:
    """Sum over all categories of (accuracy + accuracy+) — MME's perception + cognition score (max 2800).
    Questions come in image pairs; a pair cut by `--limit` is left out rather than failing lmms-eval's
    pairwise assertion."""
    from lmms_eval.tasks.mme.utils import mme_aggregate_results

    counts: dict[tuple[str, str], int] = {}
    for item in items:
        key = (item["category"], item["question_id"])
        counts[key] = counts.get(key, 0) + 1
    complete = [i for i in items if counts[(i["category"], i["question_id"])] == 2]
    return float(mme_aggregate_results(complete)) if complete else 0.0
