"""One streaming session under measurement, advanced one turn at a time.

Each turn: a frame arrives, the user prompt is prefilled, exactly `tokens_per_turn` tokens are decoded
greedily. Only the streaming protocol is used (`new_session`, `add_image`, `add_text`, `decode`,
`cache_stats`), so zoo models and real checkpoints are driven identically. The chosen token stays on the
device (no host synchronisation inside a turn) and EOS never ends a turn. The last token of a turn is fed
at the start of the next one, with the end-of-turn marker, as a real conversation would.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from casa_eval.models.conversation import PromptFormat, closing_tokens, prefill_turn
from casa_eval.profiling.clocks import TurnClock, TurnTimes
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
    energy: EnergyMeter | None  # None when turns of several models interleave (no attribution possible)
    state_budget_bytes: int | None  # CPU only; on GPU the allocator enforces the budget


@dataclass(frozen=True)
class Workload:
    frames: Sequence[np.ndarray]
    prompt: str
    tokens_per_turn: int
    fps: float


class TurnRunner:
    """A fresh session of one model; `step()` runs the next turn and returns its record."""

    def __init__(self, ctx: SessionContext, workload: Workload, *, name: str, repeat: int) -> None:
        self.ctx, self.workload, self.name, self.repeat = ctx, workload, name, repeat
        self.session: Any = ctx.model.new_session(batch_size=1)
        self.carry: list[int] | None = None
        self.turn = 0
        self.done = False
        if ctx.energy is not None:
            ctx.energy.begin()

    def step(self) -> dict[str, Any]:
        ctx, work = self.ctx, self.workload
        frame = work.frames[self.turn % len(work.frames)]
        try:
            times, fed, token = self._turn(frame)
            stats = self.session.cache_stats()
            state = stats.kv_bytes + stats.side_state_bytes
            if ctx.state_budget_bytes is not None and state > ctx.state_budget_bytes:
                raise MemoryBudgetExceeded(f"{state} bytes of conversation state")
        except (torch.OutOfMemoryError, MemoryBudgetExceeded):
            self.done = True
            self.close()
            return _oom_record(self.name, self.repeat, self.turn, ctx.sampler)
        self._after_turn(token)
        memory = ctx.sampler.read()
        record = {
            "model": self.name, "repeat": self.repeat, "turn": self.turn, "ttft_ms": times.ttft_ms,
            "decode_ms_per_token": times.decode_ms / max(work.tokens_per_turn - 1, 1), "turn_ms": times.turn_ms,
            "prompt_tokens": fed, "generated_tokens": work.tokens_per_turn,
            "kv_tokens": stats.kv_tokens, "kv_bytes": stats.kv_bytes, "analytic_kv_bytes": stats.analytic_kv_bytes,
            "side_state_tokens": stats.side_state_tokens, "side_state_bytes": stats.side_state_bytes,
            "analytic_side_state_bytes": stats.analytic_side_state_bytes, **vars(memory),
            "realtime_headroom": (1000.0 / work.fps) / times.turn_ms if times.turn_ms > 0 else None,
            "energy_j": None, "oom": False,
        }
        if ctx.energy is not None:
            ctx.energy.turn_done(record, times.turn_ms / 1e3)
        self.turn += 1
        return record

    def _turn(self, frame: np.ndarray) -> tuple[TurnTimes, int, torch.Tensor]:
        """One measured turn: (times, text tokens fed, the last token chosen). The memory sampler's turn starts
        here; the token stays on the device."""
        ctx, work = self.ctx, self.workload
        ctx.sampler.turn_start()
        ctx.clock.start()
        logits, fed = prefill_turn(self.session, ctx.tokenizer, ctx.prompt_format, [[frame]], [work.prompt],
                                   previous_tokens=[self.carry] if self.carry else None)
        token = logits.argmax(-1)
        ctx.clock.first_token()
        for _ in range(work.tokens_per_turn - 1):
            token = self.session.decode(token).argmax(-1)
        ctx.clock.end()
        return ctx.clock.read(), fed[0], token

    def _after_turn(self, token: torch.Tensor) -> None:
        """Between turns, outside the clock: the answer's closing tokens are fed with the next turn."""
        self.carry = closing_tokens(self.ctx.model, self.ctx.tokenizer, self.ctx.prompt_format, int(token.item()))

    def close(self) -> None:
        """End the session: attribute the last energy block and free the cache."""
        if self.session is None:
            return
        if self.ctx.energy is not None:
            self.ctx.energy.flush()
        self.session = None
        gc.collect()
        if self.ctx.device.type == "cuda":
            torch.cuda.empty_cache()


def _oom_record(name: str, repeat: int, turn: int, sampler: MemorySampler) -> dict[str, Any]:
    memory = vars(sampler.read())
    empty = dict.fromkeys(("ttft_ms", "decode_ms_per_token", "turn_ms", "prompt_tokens", "generated_tokens",
                           "kv_tokens", "kv_bytes", "analytic_kv_bytes", "side_state_tokens", "side_state_bytes",
                           "analytic_side_state_bytes", "energy_j", "realtime_headroom"))
    return {"model": name, "repeat": repeat, "turn": turn, **empty, **memory, "oom": True}
