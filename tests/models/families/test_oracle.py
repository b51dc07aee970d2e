"""Streaming sessions give what transformers gives on the same image and the same full token sequence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from casa_eval.models.conversation import prefill_turn
from casa_eval.models.families import FAMILIES, FamilyModel
from casa_eval.streaming import GenerationConfig, generate
from tests.models.families.references import random_image, reference_generate, reference_logits, text_ids

PROMPT = "What is in the image?"
TOLERANCE = 1e-4


def one_turn(model: FamilyModel, image: np.ndarray, prompt: str = PROMPT) -> list[list[int] | np.ndarray]:
    """The segments `prefill_turn` feeds for one user turn (after the session's preamble)."""
    fmt = model.prompt_format
    return [model.preamble_ids + text_ids(model, fmt.before_images()), image,
            text_ids(model, fmt.after_images(prompt))]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_tokens_match_transformers_generate(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    image = random_image(0)
    session = model.new_session()
    logits, _ = prefill_turn(session, model.tokenizer, model.prompt_format, [[image]], [PROMPT])
    config = GenerationConfig(max_new_tokens=8, eos_token_ids=(model.tokenizer.eos_token_id,))
    ours = generate(session, logits, config).token_ids[0]
    assert ours == reference_generate(model, one_turn(model, image), max_new_tokens=8)
    assert len(ours) == 8  # a random tiny model should not stop early; if it did, the check above got weaker


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_logits_match_one_forward(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    image = random_image(1)
    segments = one_turn(model, image)
    session = model.new_session()
    before = segments[0][len(model.preamble_ids):]  # the session sends its preamble by itself
    if before:
        session.add_text(torch.tensor([before]))
    session.add_image([image])
    after = torch.tensor([segments[2]])
    streamed = session.add_text(after, all_logits=True)[0]
    reference = reference_logits(model, segments)[-after.shape[1]:]
    assert streamed.shape == reference.shape
    assert (streamed - reference).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_the_image_reaches_the_logits(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    ids = torch.tensor([text_ids(model, model.prompt_format.after_images(PROMPT))])
    logits = []
    for seed in (2, 3):
        session = model.new_session()
        session.add_image([random_image(seed)])
        logits.append(session.add_text(ids))
    assert (logits[0] - logits[1]).abs().max().item() > 1e-4


def test_mllama_full_forward_leaks_the_image_into_earlier_text(family_model: Callable[..., FamilyModel]) -> None:
    """Why the Mllama reference prefills the text before the image on its own (see `mllama.py`)."""
    from tests.models.families.references import reference_inputs

    model = family_model("mllama")
    segments = one_turn(model, random_image(1))
    with torch.no_grad():
        full = model.hf_model(**reference_inputs(model, segments)).logits[0]
    prefix = len(segments[0])
    causal = reference_logits(model, segments)
    assert (full[prefix:] - causal).abs().max().item() > 1e-3
