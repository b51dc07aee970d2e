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
backbone cache grows by text tokens only.
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


@dataclass
class CasaState:
    """Side state of one CASA layer: the window's image K/V and its text K/V so far, [B, Hkv, *, D]."""

    k_image: torch.Tensor | None = None
    v_image: torch.Tensor | None = None
    k_text: torch.Tensor | None = None
    v_text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None  # [B, t] bool, False = padding; None = no padding so far


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
        if continues and state is not None and state.k_image is not None:
            k, v = torch.cat([state.k_image, k], 2), torch.cat([state.v_image, v], 2)  # type: ignore[list-item]
        return CasaState(k_image=k, v_image=v)  # the previous window's text is dropped

    def forward_stream(self, hidden: torch.Tensor, state: CasaState | None, chunk: StreamChunk,
                       rope: RopeTable) -> tuple[torch.Tensor, CasaState]:
        state = state or CasaState()
        q, k, v = self._text_qkv(hidden, rope)
        k_text = k if state.k_text is None else torch.cat([state.k_text, k], 2)
        v_text = v if state.v_text is None else torch.cat([state.v_text, v], 2)
        text_mask = _extend_mask(state.text_mask, chunk.text_mask, state.k_text, k)
        n_image = 0 if state.k_image is None else state.k_image.shape[2]
        keys = k_text if state.k_image is None else torch.cat([state.k_image, k_text], 2)
        values = v_text if state.v_image is None else torch.cat([state.v_image, v_text], 2)
        out = stream_window_attention(q, keys, values, n_image, causal=True, key_mask=text_mask)
        new_state = CasaState(state.k_image, state.v_image, k_text, v_text, text_mask)
        return self._output(hidden, out), new_state

    @staticmethod
    def state_tensors(state: CasaState | None) -> list[torch.Tensor]:
        if state is None:
            return []
        return [t for t in (state.k_image, state.v_image, state.k_text, state.v_text) if t is not None]

    @staticmethod
    def state_tokens(state: CasaState | None) -> int:
        if state is None:
            return 0
        return sum(int(t.shape[2]) for t in (state.k_image, state.k_text) if t is not None)


def _extend_mask(old: torch.Tensor | None, new: torch.Tensor | None, old_keys: torch.Tensor | None,
                 new_keys: torch.Tensor) -> torch.Tensor | None:
    """Window text padding mask after appending `new_keys` (None while nothing was ever padded)."""
    if old is None and new is None:
        return None
    b = new_keys.shape[0]
    t_old = 0 if old_keys is None else old_keys.shape[2]
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
