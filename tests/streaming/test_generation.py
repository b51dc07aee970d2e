"""Decoding over the streaming protocol: greedy = argmax chain, forced length, EOS and stop strings."""

from __future__ import annotations

import torch

from casa_eval.fusion import FusionConfig, FusionModel
from casa_eval.streaming import GenerationConfig, generate


def _session_and_logits(model: FusionModel) -> tuple:
    session = model.new_session()
    logits = session.add_text(torch.tensor([[15496, 995, 11]]))
    return session, logits


def test_greedy_generation_is_the_argmax_chain() -> None:
    model = FusionModel(FusionConfig(mechanism="casa"))
    session, logits = _session_and_logits(model)
    out = generate(session, logits, GenerationConfig(max_new_tokens=5))
    check, check_logits = _session_and_logits(model)
    expected = []
    for _ in range(5):
        token = check_logits.argmax(-1)
        expected.append(int(token))
        check_logits = check.decode(token)
    assert out.token_ids == [expected]
    assert out.steps == 4  # the last token is returned, not fed back


def test_eos_ends_generation_unless_the_length_is_forced() -> None:
    model = FusionModel(FusionConfig(mechanism="text_only"))
    session, logits = _session_and_logits(model)
    first = int(logits.argmax(-1))
    stopped = generate(session, logits, GenerationConfig(max_new_tokens=8, eos_token_ids=(first,)))
    assert stopped.token_ids == [[]]
    session, logits = _session_and_logits(model)
    forced = generate(session, logits, GenerationConfig(max_new_tokens=8, min_new_tokens=8,
                                                        eos_token_ids=(first,)))
    assert len(forced.token_ids[0]) == 8 and first not in forced.token_ids[0]


def test_stop_strings_cut_the_text() -> None:
    model = FusionModel(FusionConfig(mechanism="text_only"))
    session, logits = _session_and_logits(model)
    full = generate(session, logits, GenerationConfig(max_new_tokens=6), tokenizer=model.tokenizer)
    stop = full.texts[0][2:4]
    session, logits = _session_and_logits(model)
    cut = generate(session, logits, GenerationConfig(max_new_tokens=6, until=(stop,)), tokenizer=model.tokenizer)
    assert cut.texts[0] == full.texts[0][: full.texts[0].find(stop)]


def test_sampling_is_reproducible_with_a_seed() -> None:
    model = FusionModel(FusionConfig(mechanism="text_only"))
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    runs = [generate(*_session_and_logits(model), config).token_ids for _ in range(2)]
    assert runs[0] == runs[1]
