"""Memory views per turn.

* Always: process RSS (psutil) and, from a background sampler, its peak during the turn.
* On GPU: torch allocated / peak allocated / peak reserved (peaks reset at each turn start) and NVML's
  per-process and whole-device used memory, sampled every `interval_s` in the background — and, with them,
  the lowest SM clock seen during the turn (a GPU that drops its clocks under a light load makes a
  launch-bound turn slower; this says when it happened).

The conversation state itself (KV cache and side state) is measured from the cache tensors by the session.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch


@dataclass
class MemoryReading:
    rss_bytes: int
    peak_rss_bytes: int
    gpu_allocated_bytes: int | None = None
    gpu_peak_allocated_bytes: int | None = None
    gpu_peak_reserved_bytes: int | None = None
    nvml_process_bytes: int | None = None
    nvml_device_bytes: int | None = None
    gpu_sm_clock_min_mhz: int | None = None


@dataclass
class _Peaks:
    rss: int = 0
    nvml_process: int = 0
    nvml_device: int = 0
    sm_clock_min: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemorySampler:
    """Background sampler; `turn_start()` resets the per-turn peaks, `read()` returns this turn's views."""

    def __init__(self, device: torch.device, interval_s: float = 0.01) -> None:
        self.device = device
        self.interval_s = interval_s
        self._process = psutil.Process(os.getpid())
        self._peaks = _Peaks()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = _NvmlHandle(device) if device.type == "cuda" else None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="casa-eval-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._nvml is not None:
            self._nvml.close()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        process, device = self._nvml.used() if self._nvml is not None else (0, 0)
        clock = self._nvml.sm_clock_mhz() if self._nvml is not None else None
        with self._peaks.lock:
            if clock is not None:
                low = self._peaks.sm_clock_min
                self._peaks.sm_clock_min = clock if low is None else min(low, clock)
            self._peaks.rss = max(self._peaks.rss, rss)
            self._peaks.nvml_process = max(self._peaks.nvml_process, process)
            self._peaks.nvml_device = max(self._peaks.nvml_device, device)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def turn_start(self) -> None:
        with self._peaks.lock:
            self._peaks.rss = self._peaks.nvml_process = self._peaks.nvml_device = 0
            self._peaks.sm_clock_min = None
        self._sample()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> MemoryReading:
        self._sample()
        with self._peaks.lock:
            reading = MemoryReading(rss_bytes=self._process.memory_info().rss, peak_rss_bytes=self._peaks.rss)
            if self._nvml is not None:
                reading.nvml_process_bytes = self._peaks.nvml_process
                reading.nvml_device_bytes = self._peaks.nvml_device
                reading.gpu_sm_clock_min_mhz = self._peaks.sm_clock_min
        if self.device.type == "cuda":
            reading.gpu_allocated_bytes = torch.cuda.memory_allocated(self.device)
            reading.gpu_peak_allocated_bytes = torch.cuda.max_memory_allocated(self.device)
            reading.gpu_peak_reserved_bytes = torch.cuda.max_memory_reserved(self.device)
        return reading


class _NvmlHandle:
    """NVML device handle for the torch device (PCI bus order, as `CUDA_DEVICE_ORDER=PCI_BUS_ID`)."""

    def __init__(self, device: torch.device) -> None:
        self.ok = False
        try:
            import pynvml

            pynvml.nvmlInit()
            index = device.index if device.index is not None else torch.cuda.current_device()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible:
                index = int(visible.split(",")[index])
            self.handle: Any = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.pynvml = pynvml
            self.pid = os.getpid()
            self.ok = True
        except Exception:  # no NVML, no permission, or a MIG/UUID visible-devices list we cannot map
            self.ok = False

    def used(self) -> tuple[int, int]:
        if not self.ok:
            return 0, 0
        device = int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        process = 0
        for proc in self.pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == self.pid and proc.usedGpuMemory is not None:
                process += int(proc.usedGpuMemory)
        return process, device

    def sm_clock_mhz(self) -> int | None:
        if not self.ok:
            return None
        try:
            return int(self.pynvml.nvmlDeviceGetClockInfo(self.handle, self.pynvml.NVML_CLOCK_SM))
        except Exception:  # a GPU or driver without clock queries
            return None

    def close(self) -> None:
        if self.ok:
            self.pynvml.nvmlShutdown()
