"""Two streamed turns (image, text, generate, image, text) equal one transformers forward over both turns."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from casa_eval.models.conversation import prefill_turn
from casa_eval.models.families import FAMILIES, FamilyModel
from casa_eval.streaming import GenerationConfig, generate
from tests.models.families.references import (
    get_rope_index,
    random_image,
    reference_inputs,
    reference_logits,
    text_ids,
)

TOLERANCE = 1e-4
PROMPTS = ("Describe the image.", "And this one, what changed?")


def stream_two_turns(model: FamilyModel, images: list[np.ndarray],
                     ) -> tuple[torch.Tensor, list[list[int] | np.ndarray]]:
    """Turn 1 through `prefill_turn` + `generate`; turn 2 by hand so its prompt logits are all returned.

    Returns the streamed logits [L, V] of turn 2's text after the image, and the segments the session was fed.
    """
    tok, fmt = model.tokenizer, model.prompt_format
    session = model.new_session()
    logits, _ = prefill_turn(session, tok, fmt, [[images[0]]], [PROMPTS[0]])
    generated = generate(session, logits, GenerationConfig(max_new_tokens=5)).token_ids[0]
    # generate() does not feed its last token: the next turn starts with it and the end-of-turn marker.
    carried = generated[-1:] + text_ids(model, fmt.turn_end) + text_ids(model, fmt.before_images())
    session.add_text(torch.tensor([carried]))
    session.add_image([images[1]])
    after = text_ids(model, fmt.after_images(PROMPTS[1]))
    streamed = session.add_text(torch.tensor([after]), all_logits=True)[0]
    segments: list[list[int] | np.ndarray] = [
        model.preamble_ids + text_ids(model, fmt.before_images()), images[0],
        text_ids(model, fmt.after_images(PROMPTS[0])) + generated[:-1] + carried, images[1], after]
    return streamed, segments


@pytest.mark.parametrize("family", FAMILIES)
def test_second_turn_logits_match_one_forward_over_both_turns(family: str,
                                                              family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    # two sizes: Qwen2.5-VL gives them different grids (and token counts)
    streamed, segments = stream_two_turns(model, [random_image(4), random_image(5, height=112, width=84)])
    reference = reference_logits(model, segments)[-streamed.shape[0]:]
    assert (streamed - reference).abs().max().item() <= TOLERANCE


def test_qwen_positions_equal_get_rope_index(family_model: Callable[..., FamilyModel],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model = family_model("qwen2_5_vl")
    seen: list[torch.Tensor] = []
    run_decoder = model.run_decoder

    def recording(embeds: torch.Tensor, positions: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(positions)
        return run_decoder(embeds, positions, *args, **kwargs)

    monkeypatch.setattr(model, "run_decoder", recording)
    _, segments = stream_two_turns(model, [random_image(6, height=140, width=56), random_image(7)])
    streamed = torch.cat(seen, -1)  # [3, 1, S]
    inputs = reference_inputs(model, segments)
    rope_index = get_rope_index(model)
    wanted = set(inspect.signature(rope_index).parameters)
    expected, _ = rope_index(**{k: v for k, v in inputs.items() if k in wanted})
    assert streamed.shape == expected.shape
    assert torch.equal(streamed, expected)
    assert int(streamed.max()) < streamed.shape[-1] - 10  # the images really compressed positions


def test_mllama_policies_agree_with_one_image_per_turn(family_model: Callable[..., FamilyModel]) -> None:
    images = [random_image(8), random_image(9)]
    latest, _ = stream_two_turns(family_model("mllama", "latest"), images)
    for policy in ("append", "replace"):
        other, _ = stream_two_turns(family_model("mllama", policy), images)
        assert (latest - other).abs().max().item() <= TOLERANCE, policy


def test_mllama_consecutive_images_follow_the_processor_mask(family_model: Callable[..., FamilyModel]) -> None:
    """Back-to-back images: "latest" and "append" attend to both (transformers' mask), "replace" only to the
    last."""
    results = {}
    for policy in ("latest", "append", "replace"):
        model = family_model("mllama", policy)
        fmt = model.prompt_format
        images = [random_image(10), random_image(11)]
        session = model.new_session()
        session.add_text(torch.tensor([text_ids(model, fmt.before_images())]))
        for image in images:
            session.add_image([image])
        after = text_ids(model, fmt.after_images("Compare them."))
        results[policy] = session.add_text(torch.tensor([after]), all_logits=True)[0]
        segments: list[list[int] | np.ndarray] = [model.preamble_ids + text_ids(model, fmt.before_images()),
                                                  *images, after]
        reference = reference_logits(model, segments)[-len(after):]
    assert (results["latest"] - reference).abs().max().item() <= TOLERANCE
    assert (results["append"] - reference).abs().max().item() <= TOLERANCE
    assert (results["replace"] - reference).abs().max().item() > 1e-3


def test_an_answer_is_closed_by_its_unfed_token_and_the_turn_end(family_model: Callable[..., FamilyModel]) -> None:
    """`generate` feeds every token but the last; when it stops on EOS, every answer token was fed and the EOS was
    not: the next turn then starts with the turn end (Qwen's starts with that EOS), never the last token again."""
    from casa_eval.models.conversation import answer_closing_tokens
    from casa_eval.streaming import GenerationOutput

    model = family_model("qwen2_5_vl")
    tok, fmt = model.tokenizer, model.prompt_format
    turn_end = text_ids(model, fmt.turn_end)
    eos = turn_end[0]  # <|im_end|>
    assert eos == tok.convert_tokens_to_ids("<|im_end|>")
    cut = GenerationOutput(token_ids=[[11, 12]], stop_token_ids=[None])
    stopped = GenerationOutput(token_ids=[[11, 12]], stop_token_ids=[eos])
    empty = GenerationOutput(token_ids=[[]], stop_token_ids=[eos])
    assert answer_closing_tokens(model, tok, fmt, cut) == [12, *turn_end]
    assert answer_closing_tokens(model, tok, fmt, stopped) == turn_end
    assert answer_closing_tokens(model, tok, fmt, empty) == turn_end
