"""`profile --loop kyutai`: the loop of Kyutai's speed_bench_streaming.py, checked against a transcription of that
script's calls on a Kyutai-interface export, and its statistics against their definition."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from casa_eval.export.kyutai import export_zoo_mechanism
from casa_eval.models.loading import load_model
from casa_eval.profiling.clocks import TurnClock
from casa_eval.profiling.kyutai_loop import KyutaiTurnRunner, kyutai_statistics
from casa_eval.profiling.memory import MemorySampler
from casa_eval.profiling.session_loop import SessionContext, Workload

CPU = torch.device("cpu")
PROMPT, TOKENS, TURNS = "Describe the frame.", 5, 3


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)  # noise frames, as the script makes them
    return [rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module", params=["casa", "insertion"])
def export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_zoo_mechanism(request.param, tmp_path_factory.mktemp(f"kyutai-loop-{request.param}"), seed=7)


def _speed_bench_stream(directory: Path, frames: list[np.ndarray]) -> tuple[list[list[int]], list[int]]:
    """speed_bench_streaming.py's run_stream, call for call, on the export: one long assistant turn (its end
    tokens emptied; from turn 1 its start tokens too, no BOS), generate_from_image with min = max new tokens on
    the shared cache without resetting the streaming state, then the stop token forwarded at position
    seen-tokens and reset_ca_streaming_states. Returns the generated ids and the cache length, per turn."""
    from transformers import AutoModel, AutoProcessor, DynamicCache

    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    eos = model.generation_config.eos_token_id
    stop = eos if isinstance(eos, int) else eos[0]
    processor.asst_end_tokens = []
    cache = DynamicCache()
    generated, lengths = [], []
    with torch.inference_mode():
        for turn, frame in enumerate(frames):
            if turn == 0:
                messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]},
                            {"role": "assistant", "content": [{"type": "image", "image": frame}]}]
            else:
                processor.asst_start_tokens = []
                messages = [{"role": "assistant", "content": [{"type": "image", "image": frame}]}]
            inputs = processor.tokenize_messages(messages, suppress_bos_token=turn > 0)
            inputs.pop("attention_mask", None)
            length = inputs["input_ids"].shape[1]
            out = model.generate_from_image(**inputs, reset_streaming=False, do_sample=False,
                                            min_new_tokens=TOKENS, max_new_tokens=TOKENS, past_key_values=cache,
                                            attention_mask=torch.ones(1, length), eos_token_id=eos,
                                            pad_token_id=processor.tokenizer.eos_token_id)
            generated.append(out[0, length:].tolist())
            seen = cache.get_seq_length()
            model.forward(torch.tensor([[stop]]), pixel_values=None, past_key_values=cache, use_cache=True,
                          attention_mask=torch.ones(1, 1), position_ids=torch.ones(1, 1, dtype=torch.long) * seen,
                          __is_first_gen_call__=False)
            model.reset_ca_streaming_states()
            lengths.append(cache.get_seq_length())
    return generated, lengths


def _casa_eval_loop(directory: Path, frames: list[np.ndarray]) -> tuple[list[list[int]], list[dict[str, Any]]]:
    loaded = load_model("casa", checkpoint=directory, device="cpu", trust_remote_code=True)
    with MemorySampler(CPU) as sampler:
        ctx = SessionContext(model=loaded.model, tokenizer=loaded.model.tokenizer, prompt_format=loaded.prompt_format,
                             device=CPU, clock=TurnClock(CPU), sampler=sampler, energy=None, state_budget_bytes=None)
        runner = KyutaiTurnRunner(ctx, Workload(frames=frames, prompt=PROMPT, tokens_per_turn=TOKENS, fps=2.0),
                                  name="kyutai", repeat=0)
        generated, records = [], []
        for _ in frames:
            records.append(runner.step())
            generated.append(runner.generated)
        runner.close()
    return generated, records


def test_the_kyutai_loop_generates_what_speed_bench_streaming_generates(export: Path) -> None:
    frames = _frames(TURNS)
    theirs, lengths = _speed_bench_stream(export, frames)
    ours, records = _casa_eval_loop(export, frames)
    assert ours == theirs
    assert all(len(tokens) == TOKENS for tokens in ours)
    assert [r["kv_tokens"] for r in records] == lengths  # read after the stop token, as the script reads it
    assert all(r["kv_bytes"] == r["analytic_kv_bytes"] for r in records)
    assert records[1]["prompt_tokens"] == records[2]["prompt_tokens"] < records[0]["prompt_tokens"]


def test_zoo_models_continue_one_assistant_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zoo models: after turn 0 (prompt + the assistant's opening), a turn feeds the frame, one newline and,
    outside the timing, the stop token — no user text; no stop token is ever generated."""
    loaded = load_model("zoo-casa", zoo={"vision": {"image_size": 32}}, device="cpu")
    model = loaded.model
    eos = model.tokenizer.eos_token_id
    decode = type(model.new_session()).decode

    def eos_loving(self: Any, token_ids: torch.Tensor) -> torch.Tensor:
        logits = decode(self, token_ids).clone()
        logits[..., eos] = 1e4  # a model that would always stop: the loop still decodes every token
        return logits

    monkeypatch.setattr(type(model.new_session()), "decode", eos_loving)
    with MemorySampler(CPU) as sampler:
        ctx = SessionContext(model=model, tokenizer=model.tokenizer, prompt_format=loaded.prompt_format, device=CPU,
                             clock=TurnClock(CPU), sampler=sampler, energy=None, state_budget_bytes=None)
        runner = KyutaiTurnRunner(ctx, Workload(frames=_frames(3), prompt=PROMPT, tokens_per_turn=TOKENS, fps=2.0),
                                  name="zoo-casa", repeat=0)
        records = []
        for _ in range(3):
            records.append(runner.step())
            assert len(runner.generated) == TOKENS and eos not in runner.generated
    newline = len(model.tokenizer("\n", add_special_tokens=False).input_ids)
    assert [r["prompt_tokens"] for r in records[1:]] == [newline + 1] * 2
    growth = [b["kv_tokens"] - a["kv_tokens"] for a, b in itertools.pairwise(records)]
    assert growth == [newline + (TOKENS - 1) + 1] * 2  # CASA: text only — marker, decoded tokens, the stop token


def test_statistics_are_speed_bench_streamings_head_and_tail_means() -> None:
    records = [{"model": "m", "repeat": 0, "turn": t, "oom": False, "ttft_ms": 10.0 + t, "decode_ms_per_token": 2.0,
                "turn_ms": 40.0, "kv_tokens": 100 * (t + 1), "gpu_peak_allocated_bytes": None} for t in range(25)]
    stats = kyutai_statistics(records)
    assert stats["head_tail_turns"] == 2  # max(1, 25 // 10)
    assert stats["ttft_ms_first_turns"] == pytest.approx(10.5) and stats["ttft_ms_last_turns"] == pytest.approx(33.5)
    assert stats["decode_tok_per_s_first_turns"] == pytest.approx(500.0)
    assert stats["total_time_s"] == pytest.approx(1.0) and stats["final_kv_tokens"] == 2500
    assert stats["completed_turns"] == 25 and not stats["oom"]
    with_oom = kyutai_statistics([*records[:3], {**records[3], "oom": True}])
    assert with_oom["completed_turns"] == 3 and with_oom["oom"] and with_oom["head_tail_turns"] == 1


def test_an_unknown_loop_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from casa_eval.cli import app
    from casa_eval.errors import UserError

    monkeypatch.setattr("casa_eval._env.prepare_environment", lambda: None)
    result = CliRunner().invoke(app, ["profile", "--loop", "fast", "-o", str(tmp_path / "out")])
    assert isinstance(result.exception, UserError)
    assert result.exception.messages == ["--loop must be one of casa-eval, kyutai, not 'fast'"]
    assert not (tmp_path / "out").exists()
