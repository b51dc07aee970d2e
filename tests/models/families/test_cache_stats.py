"""`cache_stats()`: measured == analytic, growth per turn, and Mllama's side state under both policies."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from casa_eval.models.conversation import prefill_turn
from casa_eval.models.families import FAMILIES, FamilyModel
from casa_eval.streaming import GenerationConfig, generate
from tests.models.families.references import random_image, text_ids

TURNS = 3


@pytest.mark.parametrize(("family", "policy"),
                         [(f, "latest") for f in FAMILIES] + [("mllama", "append"), ("mllama", "replace")])
def test_stats_track_every_turn(family: str, policy: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family, policy)
    fmt = model.prompt_format
    session = model.new_session()
    empty = session.cache_stats()
    assert (empty.kv_tokens, empty.kv_bytes, empty.side_state_tokens, empty.side_state_bytes) == (0, 0, 0, 0)
    expected_tokens = len(model.preamble_ids)
    carry: list[int] | None = None
    for turn in range(TURNS):
        frame = random_image(20 + turn, model.frame_size, model.frame_size)  # a frame_size square: as documented
        logits, fed = prefill_turn(session, model.tokenizer, fmt, [[frame]], ["What now?"],
                                   previous_tokens=[carry] if carry else None)
        out = generate(session, logits, GenerationConfig(max_new_tokens=4))
        expected_tokens += fed[0] + model.cache_tokens_per_image + out.steps
        stats = session.cache_stats()
        assert stats.kv_tokens == stats.analytic_kv_tokens == expected_tokens
        assert stats.kv_bytes == stats.analytic_kv_bytes == expected_tokens * model.kv_bytes_per_token
        assert stats.side_state_bytes == stats.analytic_side_state_bytes
        if family != "mllama":
            assert stats.side_state_tokens == stats.side_state_bytes == 0
        else:
            images_held = turn + 1 if policy == "append" else 1
            assert stats.side_state_tokens == images_held * model.image_tokens_per_image
            assert stats.side_state_bytes > 0
        carry = out.token_ids[0][-1:] + text_ids(model, fmt.turn_end)
    session.reset()
    assert session.cache_stats().kv_tokens == 0


def test_mllama_first_turn_is_the_same_under_every_policy(family_model: Callable[..., FamilyModel]) -> None:
    logits = []
    for policy in ("latest", "append", "replace"):
        model = family_model("mllama", policy)
        session = model.new_session()
        logits.append(prefill_turn(session, model.tokenizer, model.prompt_format, [[random_image(30)]],
                                   ["What is it?"])[0])
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])


@pytest.mark.parametrize("family", FAMILIES)
def test_reset_replays_the_same_conversation(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    session = model.new_session()
    images: list[np.ndarray] = [random_image(31)]
    first = prefill_turn(session, model.tokenizer, model.prompt_format, [images], ["Hi"])[0]
    session.reset()
    again = prefill_turn(session, model.tokenizer, model.prompt_format, [images], ["Hi"])[0]
    assert torch.equal(first, again)
