"""What sessions accept: image formats, batches with left padding, and the errors a caller can cause."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image

from casa_eval.models.conversation import prefill_turn
from casa_eval.models.families import FamilyModel
from tests.models.families.references import random_image, text_ids

TOLERANCE = 1e-4


def test_image_formats_give_the_same_logits(family_model: Callable[..., FamilyModel]) -> None:
    model = family_model("llava")
    array = random_image(40)
    ids = torch.tensor([text_ids(model, "What is it?")])
    forms: list[Any] = [[array], array, Image.fromarray(array), [Image.fromarray(array)],
             torch.from_numpy(array).permute(2, 0, 1).float() / 255.0, array[None]]
    logits = []
    for images in forms:
        session = model.new_session()
        session.add_image(images)
        logits.append(session.add_text(ids))
    for other in logits[1:]:
        assert (other - logits[0]).abs().max().item() <= 1e-6


@pytest.mark.parametrize("family", ["llava", "mllama", "blip2"])
def test_left_padded_batch_matches_single_samples(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    assert model.max_batch_size is None
    images = [random_image(41), random_image(42)]
    prompts = ["Short?", "A much longer question about the picture, with more words?"]
    session = model.new_session(batch_size=2)
    batched, _ = prefill_turn(session, model.tokenizer, model.prompt_format, [[images[0]], [images[1]]], prompts)
    token = batched.argmax(-1)
    batched_next = session.decode(token)
    for k in range(2):
        single = model.new_session()
        logits, _ = prefill_turn(single, model.tokenizer, model.prompt_format, [[images[k]]], [prompts[k]])
        assert (logits[0] - batched[k]).abs().max().item() <= TOLERANCE
        assert (single.decode(token[k:k + 1])[0] - batched_next[k]).abs().max().item() <= TOLERANCE


def test_wrong_counts_fail_with_a_message(family_model: Callable[..., FamilyModel]) -> None:
    model = family_model("llava")
    session = model.new_session()
    with pytest.raises(ValueError, match="2 images for a batch of 1"):
        session.add_image([random_image(43), random_image(44)])
    with pytest.raises(ValueError, match="token ids"):
        session.add_text(torch.tensor([[1, 2], [3, 4]]))
