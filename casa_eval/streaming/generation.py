"""Decoding over any `StreamingSession`: greedy or sampled, with EOS, stop strings and a forced length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from casa_eval.streaming.protocol import StreamingSession


@dataclass(frozen=True)
class GenerationConfig:
    """`min_new_tokens == max_new_tokens` fixes the workload (EOS can never end it early)."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    until: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class GenerationOutput:
    token_ids: list[list[int]]  # per sample, up to (and excluding) the stop
    texts: list[str] = field(default_factory=list)
    steps: int = 0  # decoding steps run (forward passes after the prefill)
    stop_token_ids: list[int | None] = field(default_factory=list)  # per sample: the EOS that ended it, never fed


def next_tokens(logits: torch.Tensor, config: GenerationConfig, step: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of [B, V] logits."""
    logits = logits.float()
    if step < config.min_new_tokens and config.eos_token_ids:
        eos = torch.tensor(config.eos_token_ids, device=logits.device)
        logits = logits.index_fill(-1, eos, float("-inf"))  # out of place: logits may be inference tensors
    if not config.do_sample or config.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / config.temperature, -1)
    if config.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < config.top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate(session: StreamingSession, logits: torch.Tensor, config: GenerationConfig,
             tokenizer: Any = None) -> GenerationOutput:
    """Continue from the prefill's last-token `logits` [B, V]; stop a sample at EOS, at a stop string
    (needs `tokenizer`; the text is cut before it) or after `max_new_tokens`. The last token is not fed
    back: a caller that continues the conversation prepends it to its next text — the EOS a sample stopped on
    (`stop_token_ids`), else its last generated token (see `conversation.closing_tokens`)."""
    batch = logits.shape[0]
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(config.seed)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    stops: list[int | None] = [None] * batch
    texts = [""] * batch
    steps = 0
    for step in range(config.max_new_tokens):
        chosen = next_tokens(logits, config, step, generator)
        for i, tok in enumerate(chosen.tolist()):
            if done[i]:
                continue
            if tok in config.eos_token_ids and step >= config.min_new_tokens:
                done[i], stops[i] = True, tok
                continue
            tokens[i].append(tok)
            if config.until and tokenizer is not None:
                texts[i], hit = _cut_at_stop(tokenizer.decode(tokens[i]), config.until)
                done[i] = done[i] or (hit and step + 1 >= config.min_new_tokens)
        if all(done) or step + 1 == config.max_new_tokens:
            break
        logits = session.decode(chosen)
        steps += 1
    if tokenizer is not None:
        texts = [_cut_at_stop(tokenizer.decode(t), config.until)[0] for t in tokens]
    return GenerationOutput(token_ids=tokens, texts=texts, steps=steps, stop_token_ids=stops)


def _cut_at_stop(text: str, until: Sequence[str]) -> tuple[str, bool]:
    cut = min((text.find(s) for s in until if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
