"""One streaming session under measurement: frame, prompt, a fixed number of greedy tokens, per turn.

Only the streaming protocol is used (`new_session`, `add_image`, `add_text`, `decode`, `cache_stats`), so
zoo models and real checkpoints are driven identically. Decoding keeps the chosen token on the device
(no host synchronisation inside a turn) and never stops at EOS: every turn generates exactly
`tokens_per_turn` tokens. The last token of a turn is fed at the start of the next turn, with the
end-of-turn marker, as a real conversation would.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from casa_eval.models.conversation import PromptFormat, prefill_turn
from casa_eval.profiling.clocks import TurnClock
from casa_eval.profiling.energy import EnergyMeter
from casa_eval.profiling.memory import MemorySampler


class MemoryBudgetExceeded(RuntimeError):
    """The conversation state outgrew the CPU memory budget (the CPU stand-in for a GPU OOM)."""


@dataclass
class SessionContext:
    model: Any  # a StreamingModel
    tokenizer: Any
    prompt_format: PromptFormat
    device: torch.device
    clock: TurnClock
    sampler: MemorySampler
    energy: EnergyMeter
    state_budget_bytes: int | None  # CPU only; on GPU the allocator enforces the budget


def run_session(ctx: SessionContext, *, name: str, repeat: int, turns: int, frames: Sequence[np.ndarray],
                prompt: str, tokens_per_turn: int, fps: float,
                on_turn: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Run `turns` turns in a fresh session; return one record per turn (the last one flagged `oom` if the
    memory ran out, after which the session stops)."""
    records: list[dict[str, Any]] = []
    session = ctx.model.new_session(batch_size=1)
    end_ids = ctx.tokenizer(ctx.prompt_format.turn_end, add_special_tokens=False).input_ids
    carry: list[int] | None = None
    ctx.energy.begin()
    try:
        for turn in range(turns):
            frame = frames[turn % len(frames)]
            ctx.sampler.turn_start()
            try:
                ctx.clock.start()
                logits, fed = prefill_turn(session, ctx.tokenizer, ctx.prompt_format, [[frame]], [prompt],
                                           previous_tokens=[carry] if carry else None)
                token = logits.argmax(-1)
                ctx.clock.first_token()
                for _ in range(tokens_per_turn - 1):
                    token = session.decode(token).argmax(-1)
                ctx.clock.end()
                times = ctx.clock.read()
                stats = session.cache_stats()
                if ctx.state_budget_bytes is not None and stats.kv_bytes + stats.side_state_bytes > \
                        ctx.state_budget_bytes:
                    raise MemoryBudgetExceeded(f"{stats.kv_bytes + stats.side_state_bytes} bytes of state")
            except (torch.OutOfMemoryError, MemoryBudgetExceeded):
                records.append(_oom_record(name, repeat, turn, ctx.sampler))
                break
            carry = [int(token.item()), *end_ids]
            memory = ctx.sampler.read()
            record = {
                "model": name, "repeat": repeat, "turn": turn, "ttft_ms": times.ttft_ms,
                "decode_ms_per_token": times.decode_ms / max(tokens_per_turn - 1, 1), "turn_ms": times.turn_ms,
                "prompt_tokens": fed[0], "generated_tokens": tokens_per_turn,
                "kv_tokens": stats.kv_tokens, "kv_bytes": stats.kv_bytes, "analytic_kv_bytes": stats.analytic_kv_bytes,
                "side_state_tokens": stats.side_state_tokens, "side_state_bytes": stats.side_state_bytes,
                "analytic_side_state_bytes": stats.analytic_side_state_bytes,
                **vars(memory), "realtime_headroom": (1000.0 / fps) / times.turn_ms if times.turn_ms > 0 else None,
                "oom": False,
            }
            ctx.energy.turn_done(record, times.turn_ms / 1e3)
            records.append(record)
            if on_turn is not None:
                on_turn()
        ctx.energy.flush()
    finally:
        del session
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return records


def _oom_record(name: str, repeat: int, turn: int, sampler: MemorySampler) -> dict[str, Any]:
    memory = vars(sampler.read())
    empty = dict.fromkeys(("ttft_ms", "decode_ms_per_token", "turn_ms", "prompt_tokens", "generated_tokens",
                           "kv_tokens", "kv_bytes", "analytic_kv_bytes", "side_state_tokens", "side_state_bytes",
                           "analytic_side_state_bytes", "energy_j", "realtime_headroom"))
    return {"model": name, "repeat": repeat, "turn": turn, **empty, **memory, "oom": True}
