"""How fusion sublayers attach to an untouched backbone.

`FusedDecoderLayer(sublayer, layer)` replaces a decoder layer in the backbone's layer list and runs
``layer(sublayer(h))``. The backbone keeps computing its masks, RoPE and cache exactly as before; the
per-call fusion inputs (window layout and image features in parallel mode, per-layer side state in
streaming mode) travel through a shared `FusionRuntime` rather than through transformers' kwargs.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from casa_eval.fusion.window_attention import AttentionCache, WindowLayout

RopeTable = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each [B, L, head_dim]


@dataclass
class ParallelBatch:
    """Fusion inputs of one parallel (training-style) forward over interleaved text and images."""

    layout: WindowLayout
    window_images: list[torch.Tensor | None]  # per window: [B, n_w, d_model] image tokens, None for none
    image_rope: list[RopeTable | None]  # per window: RoPE at the window's insertion position, [B, 1, D]
    text_mask: torch.Tensor | None  # [B, Lt] bool, False = padding
    backend: str
    cache: AttentionCache = field(default_factory=AttentionCache)


@dataclass
class StreamChunk:
    """Fusion inputs of one streaming call: the per-layer side states and the chunk's padding mask."""

    states: dict[int, Any]
    text_mask: torch.Tensor | None  # [B, L] bool for the new tokens, None = no padding
    backend: str


class FusionRuntime:
    """Mode switch shared by the fused layers of one model: off (plain backbone), parallel or stream."""

    def __init__(self) -> None:
        self.parallel: ParallelBatch | None = None
        self.stream: StreamChunk | None = None

    @contextlib.contextmanager
    def parallel_mode(self, batch: ParallelBatch) -> Iterator[None]:
        self.parallel, self.stream = batch, None
        try:
            yield
        finally:
            self.parallel = None

    @contextlib.contextmanager
    def stream_mode(self, chunk: StreamChunk) -> Iterator[None]:
        self.parallel, self.stream = None, chunk
        try:
            yield
        finally:
            self.stream = None


class FusionSublayer(nn.Module, abc.ABC):
    """A fusion module that runs just before one backbone decoder layer and updates text hidden states.

    Subclasses implement the parallel path and the three streaming steps; state objects are plain
    dataclasses of tensors owned by the streaming session, never by the module.
    """

    @abc.abstractmethod
    def forward_parallel(self, hidden: torch.Tensor, batch: ParallelBatch, rope: RopeTable) -> torch.Tensor:
        """Text hidden states [B, Lt, d] of a whole interleaved sequence -> updated hidden states."""

    @abc.abstractmethod
    def start_window(self, state: Any, image_tokens: torch.Tensor, image_rope: RopeTable | None,
                     continues: bool) -> Any:
        """A new image [B, N, d] arrived: return the new side state (`continues`: the previous segment was
        an image too, so both belong to one window)."""

    @abc.abstractmethod
    def forward_stream(self, hidden: torch.Tensor, state: Any, chunk: StreamChunk, rope: RopeTable,
                       ) -> tuple[torch.Tensor, Any]:
        """New text hidden states [B, L, d] -> (updated hidden states, updated side state)."""

    @staticmethod
    def state_tensors(state: Any) -> list[torch.Tensor]:
        """Every tensor held in a side state (for measuring its bytes)."""
        return [] if state is None else [t for t in vars(state).values() if isinstance(t, torch.Tensor)]

    @staticmethod
    def state_tokens(state: Any) -> int:
        """Key/value tokens held in a side state (per sample)."""
        return 0 if state is None or state.k is None else int(state.k.shape[2])


class FusedDecoderLayer(nn.Module):
    """``layer(sublayer(hidden_states), ...)`` — everything else is passed to the backbone layer unchanged."""

    def __init__(self, sublayer: FusionSublayer, layer: nn.Module, runtime: FusionRuntime, index: int) -> None:
        super().__init__()
        self.fusion = sublayer
        self.layer = layer
        self.index = index
        self._runtime = (runtime,)  # a tuple keeps it out of the module tree and the state dict

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        runtime = self._runtime[0]
        rope = cast(RopeTable, kwargs.get("position_embeddings"))  # every supported family passes it
        if runtime.parallel is not None:
            hidden_states = self.fusion.forward_parallel(hidden_states, runtime.parallel, rope)
        elif runtime.stream is not None:
            states = runtime.stream.states
            hidden_states, states[self.index] = self.fusion.forward_stream(
                hidden_states, states.get(self.index), runtime.stream, rope)
        return self.layer(hidden_states, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # attributes transformers reads from its own layers (e.g. attention_type)
            return getattr(super().__getattr__("layer"), name)


def rms_norm(dim: int, eps: float) -> nn.Module:
    return nn.RMSNorm(dim, eps=eps)


def apply_rope(x: torch.Tensor, rope: RopeTable) -> torch.Tensor:
    """Rotate [B, H, L, D] by (cos, sin) [B, L, D] — the rotate-half convention of Llama/Qwen2."""
    cos, sin = rope[0].unsqueeze(1).to(x.dtype), rope[1].unsqueeze(1).to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[B, L, H*D] -> [B, H, L, D]."""
    b, length, _ = x.shape
    return x.view(b, length, -1, head_dim).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


class Projections(nn.Module):
    """q/k/v/o projections with the backbone's head layout (a fusion layer's own attention weights)."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)
