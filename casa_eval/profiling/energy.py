"""GPU energy from NVML's cumulative counter, attributed to turns over blocks of at least one second.

The counter updates every ~20-100 ms, so a single short turn cannot be measured; turns are grouped into
blocks of >= `min_block_s` and each turn of a block gets the block's energy divided by its turns.
"""

from __future__ import annotations

from typing import Any

import torch


class EnergyMeter:
    def __init__(self, device: torch.device, min_block_s: float = 1.0) -> None:
        self.min_block_s = min_block_s
        self._handle: Any = None
        self._pynvml: Any = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises on GPUs without the counter
                self._handle, self._pynvml = handle, pynvml
            except Exception:
                self._handle = None
        self._block_start_mj: int | None = None
        self._block_seconds = 0.0
        self._block_turns: list[dict[str, Any]] = []

    @property
    def available(self) -> bool:
        return self._handle is not None

    def _counter_mj(self) -> int:
        return int(self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def begin(self) -> None:
        if self.available:
            self._block_start_mj = self._counter_mj()
            self._block_seconds, self._block_turns = 0.0, []

    def turn_done(self, record: dict[str, Any], seconds: float) -> None:
        """Add a finished turn's record; fills `energy_j` of the block's turns once the block is long enough."""
        if not self.available:
            record["energy_j"] = None
            return
        self._block_turns.append(record)
        self._block_seconds += seconds
        if self._block_seconds >= self.min_block_s:
            self.flush()

    def flush(self) -> None:
        if not self.available or not self._block_turns or self._block_start_mj is None:
            return
        now = self._counter_mj()
        joules = max(now - self._block_start_mj, 0) / 1e3  # a counter reset reads as 0, never negative
        for record in self._block_turns:
            record["energy_j"] = joules / len(self._block_turns)
        self._block_start_mj, self._block_seconds, self._block_turns = now, 0.0, []
