"""`casa`: Cross-Attention via Self-Attention (Kyutai, arXiv 2512.19535).

A CASA sublayer sits before each fusion layer. Its queries are text tokens; its keys/values are the
current window's image tokens **plus the window's text tokens, causally, including the query itself**.
A window is an image (or a run of consecutive images) and the text after it; text before the first image
is a text-only window. The backbone's self-attention never sees an image token and image tokens are
never updated. For ``[a b | I1 I2 I3 | c d | J1 J2 J3 | e f]``::

          I1 I2 I3 J1 J2 J3 | a b c d e f
    a      .  .  .  .  .  . | ■ . . . . .
    b      .  .  .  .  .  . | ■ ■ . . . .
    c      ■  ■  ■  .  .  . | . . ■ . . .
    d      ■  ■  ■  .  .  . | . . ■ ■ . .
    e      .  .  .  ■  ■  ■ | . . . . ■ .
    f      .  .  .  ■  ■  ■ | . . . . ■ ■

Per window this is a causal mask aligned bottom-right, which is what every backend of
`window_attention` computes. The sublayer is pre-norm with a residual add and no gate: a token's attention
to itself acts as the gate. Text queries/keys use the backbone's RoPE at text positions; image keys are
rotated at the window's insertion position (`casa_image_rope="insertion"`, MI-RoPE-like) or not at all.

Streaming: the side state per fusion layer is [image K/V | K/V of the window's text so far]; it is
replaced when a new image opens a new window, so it holds N + (current window text) tokens, and the
backbone cache grows by text tokens only. The window lives in one preallocated buffer per K and V: new text
K/V are written after the filled slots and attention reads a view of the filled part, so a decode step never
copies the window's image K/V (the buffer doubles when full, an amortised O(1) copy per token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion._mechanism import Mechanism
from casa_eval.fusion.layers import (
    FusionSublayer,
    ParallelBatch,
    Projections,
    RopeTable,
    StreamChunk,
    apply_rope,
    merge_heads,
    rms_norm,
    split_heads,
)
from casa_eval.fusion.window_attention import stream_window_attention, window_attention

WINDOW_RESERVE = 64  # text slots a new window reserves after its image K/V before the buffer first grows


@dataclass
class CasaState:
    """Side state of one CASA layer: the window's image K/V followed by its text K/V so far, in one buffer
    per K and V of shape [B, Hkv, capacity, D], of which the first `length` slots are filled."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    n_image: int = 0
    length: int = 0
    text_mask: torch.Tensor | None = None  # [B, t] bool, False = padding; None = no padding so far

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self.k is None else self.k[:, :, :self.length]

    @property
    def values(self) -> torch.Tensor | None:
        return None if self.v is None else self.v[:, :, :self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write new text K/V after the filled slots, growing the buffers (doubling) only when full."""
        end = self.length + k.shape[2]
        if self.k is None or self.v is None or end > self.k.shape[2]:
            capacity = max(end, 2 * (0 if self.k is None else self.k.shape[2]), self.n_image + WINDOW_RESERVE)
            self.k, self.v = _grown(self.k, self.length, capacity, k), _grown(self.v, self.length, capacity, v)
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end


def _grown(buffer: torch.Tensor | None, filled: int, capacity: int, like: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False):  # a normal tensor: writable both inside and outside inference mode
        out = like.new_empty(*like.shape[:2], capacity, like.shape[3])
    if buffer is not None and filled:
        out[:, :, :filled] = buffer[:, :, :filled]
    return out


class CasaLayer(FusionSublayer):
    def __init__(self, config: FusionConfig, projections: nn.Module | None = None) -> None:
        super().__init__()
        spec = config.backbone
        self.head_dim = spec.head_dim
        self.rotate_image = config.casa_image_rope == "insertion"
        self.norm = rms_norm(spec.hidden_size, spec.rms_norm_eps)
        if projections is None:
            self.attn: nn.Module = Projections(spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim)
            self._shared: tuple[nn.Module, ...] = ()
        else:  # casa_shared: the block's own self-attention weights, not registered a second time
            self._shared = (projections,)

    @property
    def projections(self) -> nn.Module:
        return self._shared[0] if self._shared else self.attn

    def _heads(self, proj: str, x: torch.Tensor) -> torch.Tensor:
        p = self.projections
        y = split_heads(getattr(p, proj)(x), self.head_dim)
        norm = getattr(p, proj[0] + "_norm", None)  # Qwen3/Gemma-style per-head q/k norms, when shared
        return norm(y.transpose(1, 2)).transpose(1, 2) if norm is not None and proj != "v_proj" else y

    def _text_qkv(self, hidden: torch.Tensor, rope: RopeTable,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.norm(hidden)
        q = apply_rope(self._heads("q_proj", x), rope)
        k = apply_rope(self._heads("k_proj", x), rope)
        return q, k, self._heads("v_proj", x)

    def _image_kv(self, image_tokens: torch.Tensor, image_rope: RopeTable | None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(image_tokens)
        k = self._heads("k_proj", x)
        if self.rotate_image and image_rope is not None:
            k = apply_rope(k, image_rope)  # one position per window, broadcast over its image tokens
        return k, self._heads("v_proj", x)

    def _output(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        o_proj = cast(nn.Module, self.projections.o_proj)
        return hidden + o_proj(merge_heads(attended))

    def forward_parallel(self, hidden: torch.Tensor, batch: ParallelBatch, rope: RopeTable) -> torch.Tensor:
        q, k, v = self._text_qkv(hidden, rope)
        fixed = [None if img is None else self._image_kv(img, irope)
                 for img, irope in zip(batch.window_images, batch.image_rope, strict=True)]
        out = window_attention(q, (k, v), fixed, batch.layout, key_mask=batch.text_mask,
                               backend=batch.backend, cache=batch.cache)
        return self._output(hidden, out)

    def start_window(self, state: CasaState | None, image_tokens: torch.Tensor,
                     image_rope: RopeTable | None, continues: bool) -> CasaState:
        k, v = self._image_kv(image_tokens, image_rope)
        if continues and state is not None and state.n_image:
            k = torch.cat([state.k[:, :, :state.n_image], k], 2)  # type: ignore[index]
            v = torch.cat([state.v[:, :, :state.n_image], v], 2)  # type: ignore[index]
        window = CasaState(n_image=k.shape[2])  # the previous window's text is dropped
        window.append(k, v)
        return window

    def forward_stream(self, hidden: torch.Tensor, state: CasaState | None, chunk: StreamChunk,
                       rope: RopeTable) -> tuple[torch.Tensor, CasaState]:
        state = state or CasaState()
        q, k, v = self._text_qkv(hidden, rope)
        text_before = state.length - state.n_image
        state.text_mask = _extend_mask(state.text_mask, chunk.text_mask, text_before, k)
        state.append(k, v)  # in place: the image K/V already in the buffer are not copied
        keys, values = state.keys, state.values
        assert keys is not None and values is not None
        out = stream_window_attention(q, keys, values, state.n_image, causal=True, key_mask=state.text_mask)
        return self._output(hidden, out), state

    @staticmethod
    def state_tensors(state: CasaState | None) -> list[torch.Tensor]:
        """The filled part of the window (what the analytic size counts); the buffer reserves up to twice that."""
        if state is None or state.k is None:
            return []
        return [t for t in (state.keys, state.values) if t is not None]

    @staticmethod
    def state_tokens(state: CasaState | None) -> int:
        return 0 if state is None else state.length


def _extend_mask(old: torch.Tensor | None, new: torch.Tensor | None, t_old: int,
                 new_keys: torch.Tensor) -> torch.Tensor | None:
    """Window text padding mask after appending `new_keys` (None while nothing was ever padded)."""
    if old is None and new is None:
        return None
    b = new_keys.shape[0]
    device = new_keys.device
    old = old if old is not None else torch.ones(b, t_old, dtype=torch.bool, device=device)
    new = new if new is not None else torch.ones(b, new_keys.shape[2], dtype=torch.bool, device=device)
    return torch.cat([old, new], 1)


class Casa(Mechanism):
    name = "casa"

    def make_sublayer(self, index: int, layer: nn.Module) -> FusionSublayer | None:
        return CasaLayer(self.config) if index in (self.config.fusion_layers or ()) else None

    def side_tokens(self, window_image_tokens: int, window_text_tokens: int) -> int:
        return window_image_tokens + window_text_tokens
