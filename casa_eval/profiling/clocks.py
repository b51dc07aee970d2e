"""Turn clocks: CUDA events on GPU (one synchronisation per turn, never per forward), perf_counter on CPU.

A turn is marked at three points — start (the frame arrives), first token chosen, end — and read once at
the end of the turn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TurnTimes:
    ttft_ms: float  # frame arrival -> first token (image encoding + prefill + first pick)
    turn_ms: float  # frame arrival -> last token
    decode_ms: float  # first token -> last token


class TurnClock:
    """`start()`, `first_token()`, `end()` then `read()`; the CUDA flavour synchronises only in `read()`."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list[float] = []
        self._events: list[torch.cuda.Event] = []

    def _mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append(event)
        else:
            self._marks.append(time.perf_counter())

    def start(self) -> None:
        self._marks, self._events = [], []
        self._mark()

    def first_token(self) -> None:
        self._mark()

    def end(self) -> None:
        self._mark()

    def read(self) -> TurnTimes:
        if self.cuda:
            self._events[-1].synchronize()
            start, first, end = self._events
            ttft, total = start.elapsed_time(first), start.elapsed_time(end)
        else:
            start_s, first_s, end_s = self._marks
            ttft, total = (first_s - start_s) * 1e3, (end_s - start_s) * 1e3
        return TurnTimes(ttft_ms=ttft, turn_ms=total, decode_ms=total - ttft)
