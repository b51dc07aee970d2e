"""`casa-eval profile --loop kyutai`: the turn loop and statistics of Kyutai's `scripts/speed_bench_streaming.py`
(kyutai-labs/casa), so that numbers sit next to the table of Kyutai's README.

How it differs from casa-eval's own loop (`session_loop.TurnRunner`), each point as Kyutai's script does it:

* the conversation is one long assistant turn: turn 0 is the user prompt, then the assistant turn opening with
  the frame; every later turn is a bare frame continuing that assistant turn (no user text, no turn markers,
  no beginning-of-sequence token). Where a model's processor puts markers around an image (Kyutai's
  `pre_image_tokens` / `post_image_tokens`) they come with it; models without markers get a newline after the
  frame, the one token the first answer token is predicted from;
* the clock starts after preprocessing (zoo and Kyutai models take ready pixels; the transformers families'
  sessions preprocess inside `add_image`, so there it is inside the clock);
* every forward is timed on its own and, on CUDA, ends with a synchronisation (Kyutai's forward hook); the
  first forward is the time to first token, the others sum to the decode time;
* exactly `tokens_per_turn` tokens, never a stop token among them (`min_new_tokens = max_new_tokens`);
* after the last token, outside the timing, one stop token (the checkpoint's first) is forwarded so that the
  cache records the end of the answer, as Kyutai's script does — `kv_tokens` is read after it;
* the summary is Kyutai's: means over the first and the last `max(1, n // 10)` turns of time to first token
  and decode tokens per second, total time, final cache length and peak memory (`kyutai_statistics`).

The warm-up session and the repeats are the profile's, like casa-eval's own loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from casa_eval.profiling.clocks import TurnTimes
from casa_eval.profiling.session_loop import TurnRunner

LOOPS = ("casa-eval", "kyutai")


class KyutaiTurnRunner(TurnRunner):
    """A session measured the way speed_bench_streaming.py measures it."""

    generated: list[int]  # the last turn's tokens

    def _turn(self, frame: np.ndarray) -> tuple[TurnTimes, int, torch.Tensor]:
        ctx, work = self.ctx, self.workload
        image = _preprocessed(ctx.model, frame)  # before the clock, as Kyutai's script prepares its inputs
        stops = torch.tensor(stop_tokens(ctx.model, ctx.tokenizer), device=ctx.device)
        ctx.sampler.turn_start()
        start = time.perf_counter()
        logits, fed = continue_with_frame(self.session, ctx.model, ctx.tokenizer, ctx.prompt_format, image,
                                          work.prompt if self.turn == 0 else None)
        token = logits.index_fill(-1, stops, float("-inf")).argmax(-1)
        self._synchronize()
        ttft_s = time.perf_counter() - start
        tokens, decode_s = [token], 0.0
        for _ in range(work.tokens_per_turn - 1):
            step = time.perf_counter()
            token = self.session.decode(token).index_fill(-1, stops, float("-inf")).argmax(-1)
            self._synchronize()
            decode_s += time.perf_counter() - step
            tokens.append(token)
        self.generated = [int(t) for t in torch.cat(tokens).tolist()]
        self.session.add_text(stops[:1].view(1, 1))  # outside the timing: the stop token joins the cache
        ttft_ms, decode_ms = ttft_s * 1e3, decode_s * 1e3
        return TurnTimes(ttft_ms=ttft_ms, turn_ms=ttft_ms + decode_ms, decode_ms=decode_ms), fed + 1, token

    def _after_turn(self, token: torch.Tensor) -> None:
        """The stop token was forwarded inside `_turn`; the next frame continues the same assistant turn."""

    def _synchronize(self) -> None:
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)


def _preprocessed(model: Any, frame: np.ndarray) -> Any:
    """The frame as the model's `add_image` takes it, preprocessed when the model can do it separately."""
    prepare = getattr(model, "prepare_images", None)
    return prepare([frame]) if prepare is not None else [frame]


def stop_tokens(model: Any, tokenizer: Any) -> list[int]:
    """The checkpoint's stop tokens, the one forwarded after a turn first (Kyutai: `generation_config.eos_token_id`,
    its first if a list); the tokenizer's EOS for models without a generation config."""
    stops = getattr(model, "stop_token_ids", None)
    return [int(s) for s in stops] if stops else [int(tokenizer.eos_token_id)]


def continue_with_frame(session: Any, model: Any, tokenizer: Any, fmt: Any, image: Any,
                        prompt: str | None) -> tuple[torch.Tensor, int]:
    """Append one frame to the open assistant turn — after the user `prompt` and the assistant's opening on the
    first turn — and return the last position's logits [1, V] and the text tokens fed."""
    own = getattr(session, "continue_with_frame", None)
    if own is not None:  # Kyutai's sessions tokenize with their own processor, as the script does
        logits, fed = own(image, prompt)
        return logits, int(fed)
    fed = 0
    if prompt is not None:
        opening = _ids(tokenizer, fmt.user_prefix + prompt + fmt.assistant_prefix)
        session.add_text(torch.tensor([opening]))
        fed += len(opening)
    session.add_image(image)
    marker = _ids(tokenizer, "\n")
    fed += len(marker)
    return session.add_text(torch.tensor([marker])), fed


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def kyutai_statistics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """speed_bench_streaming.py's summary of one model's turns (median over repeats per turn first, when
    several sessions ran): head/tail are the first and last `max(1, n // 10)` completed turns, averaged."""
    frame = pd.DataFrame([r for r in records if r.get("repeat", 0) >= 0])
    done = frame[~frame["oom"].astype(bool)]
    summary: dict[str, Any] = {"completed_turns": 0, "oom": bool(frame["oom"].astype(bool).any())}
    if done.empty:
        return summary
    done = done.assign(decode_tok_per_s=1e3 / done["decode_ms_per_token"])
    per_turn = done.groupby("turn")[["ttft_ms", "decode_ms_per_token", "turn_ms", "decode_tok_per_s", "kv_tokens",
                                     "gpu_peak_allocated_bytes"]].median().sort_index()
    n = len(per_turn)
    k = max(1, n // 10)
    head, tail = per_turn.iloc[:k], per_turn.iloc[-k:]
    peak = per_turn["gpu_peak_allocated_bytes"].max()
    summary.update({
        "completed_turns": n, "head_tail_turns": k,
        "total_time_s": float(per_turn["turn_ms"].sum() / 1e3),
        "ttft_ms_first_turns": float(head["ttft_ms"].mean()), "ttft_ms_last_turns": float(tail["ttft_ms"].mean()),
        "decode_tok_per_s_first_turns": float(head["decode_tok_per_s"].mean()),
        "decode_tok_per_s_last_turns": float(tail["decode_tok_per_s"].mean()),
        "final_kv_tokens": int(per_turn["kv_tokens"].iloc[-1]),
        "peak_gpu_gib": None if pd.isna(peak) else float(peak) / 2**30,
    })
    return summary
