"""Benchmark: CASA window attention for 4 vs 16 windows of 256 image + 64 text tokens, every backend.

The goal is linear scaling: 16 windows should cost <= 4.5x the time of 4 (a dense global mask grows
quadratically, ~15x). Times are medians of `torch.utils.benchmark` blocked runs, measured side by side in
one process. Run: `uv run python benchmarks/casa_window_attention.py [--threads 1] [--device cpu]`.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

from casa_eval.fusion.window_attention import AttentionCache, WindowLayout, flash_available, window_attention

IMAGE, TEXT, HEADS, KV_HEADS, HEAD_DIM = 256, 64, 8, 8, 64


def _inputs(windows: int, device: str, dtype: torch.dtype) -> tuple:
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    lt = windows * TEXT
    q = rand(1, HEADS, lt, HEAD_DIM)
    text = (rand(1, KV_HEADS, lt, HEAD_DIM), rand(1, KV_HEADS, lt, HEAD_DIM))
    fixed = [None] + [(rand(1, KV_HEADS, IMAGE, HEAD_DIM), rand(1, KV_HEADS, IMAGE, HEAD_DIM))
                      for _ in range(windows)]
    return q, text, fixed, WindowLayout((0,) + (TEXT,) * windows)


def measure(device: str, *, threads: int | None = None, min_run_time: float = 1.0,
            backends: list[str] | None = None) -> list[dict[str, object]]:
    """One row per backend (default: every one this device runs): median ms for 4 and 16 windows and their
    ratio (goal <= 4.5)."""
    threads = threads or torch.get_num_threads()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if backends is None:
        backends = ["dense", "sdpa", "flex"] + (["flash"] if flash_available() and device.startswith("cuda") else [])
    rows: list[dict[str, object]] = []
    for backend in backends:
        medians = []
        for windows in (4, 16):
            q, text, fixed, layout = _inputs(windows, device, dtype)
            # One forward builds its masks and index tensors once and shares them across fusion layers;
            # the warm-up builds them (and compiles flex), the timed calls reuse them.
            cache = AttentionCache()
            window_attention(q, text, fixed, layout, backend=backend, cache=cache)
            timer = benchmark.Timer(
                stmt="window_attention(q, text, fixed, layout, backend=backend, cache=cache)",
                globals={"window_attention": window_attention, "q": q, "text": text, "fixed": fixed,
                         "layout": layout, "backend": backend, "cache": cache},
                num_threads=threads)
            medians.append(timer.blocked_autorange(min_run_time=min_run_time).median * 1e3)
        rows.append({"backend": backend, "device": device, "dtype": str(dtype).removeprefix("torch."),
                     "ms_4_windows": medians[0], "ms_16_windows": medians[1], "ratio_16_to_4": medians[1] / medians[0]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    print(f"device={args.device} dtype={dtype} threads={args.threads} windows of {IMAGE} image + {TEXT} "
          f"text tokens, {HEADS} heads x {HEAD_DIM}")
    print(f"{'backend':>8} {'4 windows ms':>13} {'16 windows ms':>14} {'ratio 16/4':>11}  goal <= 4.5")
    for row in measure(args.device, threads=args.threads, min_run_time=args.min_run_time):
        ratio = float(row["ratio_16_to_4"])  # type: ignore[arg-type]
        verdict = "ok" if ratio <= 4.5 else "above goal"
        print(f"{row['backend']:>8} {row['ms_4_windows']:13.2f} {row['ms_16_windows']:14.2f} {ratio:11.2f}  {verdict}")


if __name__ == "__main__":
    main()
