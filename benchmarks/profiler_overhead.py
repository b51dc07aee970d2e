"""Benchmark: what the profiler's instrumentation costs — the instrumented turn loop (turn clock, memory
sampler thread, cache introspection, record keeping) against a bare loop doing the same streaming calls.

Both loops run the same sessions alternately (A, B, A, B, ...) in one process; the ratio of the medians is
printed. Target: <= 1.02. Run: `uv run python benchmarks/profiler_overhead.py [--rounds 9] [--turns 24]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from casa_eval.models.conversation import prefill_turn
from casa_eval.models.loading import load_model
from casa_eval.profiling.clocks import TurnClock
from casa_eval.profiling.memory import MemorySampler
from casa_eval.profiling.session_loop import SessionContext, TurnRunner, Workload
from casa_eval.profiling.video import synthetic_frames


def bare_session(loaded, workload: Workload, turns: int) -> None:  # type: ignore[no-untyped-def]
    model, tok, fmt = loaded.model, loaded.model.tokenizer, loaded.prompt_format
    session = model.new_session(batch_size=1)
    end_ids = tok(fmt.turn_end, add_special_tokens=False).input_ids
    carry = None
    for turn in range(turns):
        logits, _ = prefill_turn(session, tok, fmt, [[workload.frames[turn % len(workload.frames)]]],
                                 [workload.prompt], previous_tokens=[carry] if carry else None)
        token = logits.argmax(-1)
        for _ in range(workload.tokens_per_turn - 1):
            token = session.decode(token).argmax(-1)
        carry = [int(token.item()), *end_ids]


def instrumented_session(ctx: SessionContext, workload: Workload, turns: int) -> None:
    runner = TurnRunner(ctx, workload, name="bench", repeat=0)
    for _ in range(turns):
        runner.step()
    runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo-casa")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded = load_model(args.model, zoo={"vision": {"image_size": 128}}, device=args.device)
    workload = Workload(frames=synthetic_frames(8, 128), prompt="Describe the frame.", tokens_per_turn=args.tokens,
                        fps=2.0)
    with MemorySampler(device) as sampler:
        ctx = SessionContext(model=loaded.model, tokenizer=loaded.model.tokenizer,
                             prompt_format=loaded.prompt_format, device=device, clock=TurnClock(device),
                             sampler=sampler, energy=None, state_budget_bytes=None)
        bare_session(loaded, workload, 4)  # warm-up
        instrumented_session(ctx, workload, 4)
        bare, instrumented = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            bare_session(loaded, workload, args.turns)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            instrumented_session(ctx, workload, args.turns)
            instrumented.append(time.perf_counter() - start)
    b, i = statistics.median(bare), statistics.median(instrumented)
    print(f"{args.model}: {args.rounds} rounds x {args.turns} turns x {args.tokens} tokens, {device}")
    print(f"bare loop          median {b * 1e3:9.1f} ms per session")
    print(f"instrumented loop  median {i * 1e3:9.1f} ms per session")
    print(f"overhead ratio     {i / b:.4f}  (target <= 1.02)")


if __name__ == "__main__":
    main()
