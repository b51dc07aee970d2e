"""One conversation through casa-eval's streaming adapter, exactly as `run` drives a multi-turn request
(`CasaEvalLMM.generate_until_multi_round`): `prefill_turn`, `generate`, then the answer's closing tokens carried
into the next turn — with every step's logits and the cache after each turn recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from casa_eval.models.conversation import answer_closing_tokens, prefill_turn
from casa_eval.models.loading import LoadedModel
from casa_eval.streaming import CacheStats, GenerationConfig, generate
from casa_eval.verification.inputs import Conversation


@dataclass
class TurnTrace:
    """What one side produced for one turn.

    `tokens`: the generated ids, ending with the stop token when decoding stopped on one; `logits`: [V] float32 on
    the CPU, the scores each of those tokens was picked from; `cache_tokens`: tokens the conversation's KV cache
    holds after the turn (None when unknown); `stats`: the adapter's cache report (adapter side only)."""

    tokens: list[int]
    logits: list[torch.Tensor]
    cache_tokens: int | None
    stats: CacheStats | None = None


class _RecordingSession:
    """A session whose decode steps keep their logits (what `generate` picks each token from)."""

    def __init__(self, session: Any, first: torch.Tensor) -> None:
        self.session = session
        self.logits = [first[0].float().cpu()]

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.session.decode(token_ids)
        self.logits.append(logits[0].float().cpu())
        return logits


def stream_conversation(loaded: LoadedModel, conversation: Conversation, config: GenerationConfig) -> list[TurnTrace]:
    model: Any = loaded.model
    tokenizer, fmt = model.tokenizer, loaded.prompt_format
    session = model.new_session(batch_size=1)
    traces, carry = [], None
    for turn in conversation.turns:
        logits, _ = prefill_turn(session, tokenizer, fmt, [[turn.image]], [turn.question],
                                 previous_tokens=[carry] if carry else None)
        recording = _RecordingSession(session, logits)
        out = generate(recording, logits, config)  # type: ignore[arg-type]  # only `decode` is called
        stop = out.stop_token_ids[0]
        stats = session.cache_stats()
        traces.append(TurnTrace(tokens=out.token_ids[0] + ([] if stop is None else [stop]),
                                logits=recording.logits, cache_tokens=stats.kv_tokens, stats=stats))
        carry = answer_closing_tokens(model, tokenizer, fmt, out)
    return traces
