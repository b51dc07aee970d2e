"""Benchmark: CASA decoding at paper-2b width, the window buffer against re-concatenating the window per step.

A CASA decode step attends over [the window's image K/V | the window's text K/V so far]. Built by
concatenation, every step copies the whole window (1,024 image tokens at paper-2b) in every fusion layer;
with the preallocated window buffer (`casa_eval.fusion.casa.CasaState`) a step writes one token's K/V and
attends over a view. Both run here side by side, on the same layers and inputs: the CASA sublayers of
paper-2b (14 fusion layers, d=2048, 16 query heads, 8 KV heads x 128, 1,024 image tokens per frame), a few
turns of one frame + an 8-token prompt + `--tokens` decoded tokens. Reported: CASA-sublayer milliseconds per
decoded token (the backbone's own layers are the same for both and left out), median over decode steps.
Run: `uv run python benchmarks/casa_decode_buffer.py [--turns 3] [--tokens 16] [--device cpu]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion.backbone import TORCH_DTYPES
from casa_eval.fusion.casa import CasaLayer, CasaState
from casa_eval.fusion.layers import RopeTable, StreamChunk
from casa_eval.fusion.window_attention import stream_window_attention
from casa_eval.profiling.profile_config import resolve_profile_config


class ConcatenatingCasaLayer(CasaLayer):
    """CASA streaming as it was before the window buffer: the window's keys and values are concatenated
    anew at every step (image K/V included). The same weights and arithmetic; only the memory traffic differs."""

    def forward_stream(self, hidden: torch.Tensor, state: CasaState | None, chunk: StreamChunk,
                       rope: RopeTable) -> tuple[torch.Tensor, CasaState]:
        assert state is not None and state.k is not None and state.v is not None
        q, k, v = self._text_qkv(hidden, rope)
        keys, values = torch.cat([state.k[:, :, :state.length], k], 2), torch.cat([state.v[:, :, :state.length], v], 2)
        out = stream_window_attention(q, keys, values, state.n_image, causal=True)
        return self._output(hidden, out), CasaState(keys, values, state.n_image, keys.shape[2])


def _rope(length: int, start: int, head_dim: int, theta: float, device: torch.device) -> RopeTable:
    positions = torch.arange(start, start + length, device=device, dtype=torch.float32)
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(positions, inv)
    angles = torch.cat([angles, angles], -1)[None]
    return angles.cos(), angles.sin()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_ms_per_token(layers: list[CasaLayer], config: FusionConfig, *, turns: int, tokens: int,
                        device: torch.device, seed: int = 0) -> list[float]:
    """Milliseconds per decoded token through every CASA sublayer, one value per decode step."""
    spec, dtype = config.backbone, TORCH_DTYPES[config.dtype]
    g = torch.Generator().manual_seed(seed)
    n_image = config.vision.num_image_tokens
    chunk = StreamChunk({}, None, "sdpa")
    position, out = 0, []
    with torch.inference_mode():
        for _ in range(turns):
            image = torch.randn(1, n_image, spec.hidden_size, generator=g).to(device, dtype)
            states = [layer.start_window(None, image, None, continues=False) for layer in layers]
            prompt = torch.randn(1, 8, spec.hidden_size, generator=g).to(device, dtype)
            rope = _rope(8, position, spec.head_dim, spec.rope_theta, device)
            for i, layer in enumerate(layers):
                _, states[i] = layer.forward_stream(prompt, states[i], chunk, rope)
            position += 8
            for _ in range(tokens):
                hidden = torch.randn(1, 1, spec.hidden_size, generator=g).to(device, dtype)
                rope = _rope(1, position, spec.head_dim, spec.rope_theta, device)
                _sync(device)
                start = time.perf_counter()
                for i, layer in enumerate(layers):
                    hidden, states[i] = layer.forward_stream(hidden, states[i], chunk, rope)
                _sync(device)
                out.append((time.perf_counter() - start) * 1e3)
                position += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper-2b")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16, help="decoded tokens per turn")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both implementations")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: the profile's on CUDA, float32 on CPU")
    args = parser.parse_args()
    profile = resolve_profile_config(args.profile)
    device = torch.device(args.device)
    dtype = args.dtype or (profile.dtype if device.type == "cuda" else "float32")
    dims = {**profile.zoo_dimensions(), "dtype": dtype, "mechanism": "casa"}
    config = FusionConfig.model_validate(dims)
    torch.manual_seed(0)
    buffered = [CasaLayer(config).to(device, TORCH_DTYPES[dtype]).eval() for _ in config.fusion_layers or ()]
    concatenating = [ConcatenatingCasaLayer(config).to(device, TORCH_DTYPES[dtype]).eval() for _ in buffered]
    for old, new in zip(concatenating, buffered, strict=True):
        old.load_state_dict(new.state_dict())
    spec = config.backbone
    print(f"{args.profile}: {len(buffered)} CASA layers, d={spec.hidden_size}, {spec.num_heads} heads, "
          f"{spec.num_kv_heads} KV heads x {spec.head_dim}, {config.vision.num_image_tokens} image tokens per frame; "
          f"device={device} dtype={dtype} threads={torch.get_num_threads()}; {args.turns} turns x {args.tokens} "
          f"tokens x {args.rounds} rounds")
    decode_ms_per_token(buffered[:1], config, turns=1, tokens=2, device=device)  # warm-up
    decode_ms_per_token(concatenating[:1], config, turns=1, tokens=2, device=device)
    samples: dict[str, list[float]] = {"concatenate per step (before)": [], "window buffer (after)": []}
    for _ in range(args.rounds):  # alternate, so a drift of the machine hits both alike
        for label, layers in zip(samples, (concatenating, buffered), strict=True):
            samples[label] += decode_ms_per_token(layers, config, turns=args.turns, tokens=args.tokens,
                                                  device=device)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    print(f"{'implementation':>30} {'CASA decode ms/token (median)':>30}")
    for label, value in medians.items():
        print(f"{label:>30} {value:30.2f}")
    before, after = medians.values()
    print(f"ratio before/after: {before / after:.2f}x")


if __name__ == "__main__":
    main()
