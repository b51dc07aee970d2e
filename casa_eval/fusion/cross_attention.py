"""`cross_attention`: vanilla cross-attention sublayers before the fusion layers (Flamingo's layout).

Text queries attend to the tokens of the latest image (or run of consecutive images); the backbone's own
self-attention only ever sees text. Text before the first image gets no visual contribution (its rows
are zero). No RoPE in the sublayer, as in mllama. For ``[a b | I1 I2 I3 | c d | J1 J2 J3 | e f]``::

          I1 I2 I3 J1 J2 J3
    a      .  .  .  .  .  .      <- no image yet: output zero
    b      .  .  .  .  .  .
    c      ■  ■  ■  .  .  .
    d      ■  ■  ■  .  .  .
    e      .  .  .  ■  ■  ■
    f      .  .  .  ■  ■  ■

Streaming: the image K/V are projected once when the image arrives and *replace* the previous image's
(mllama appends them instead, which makes memory grow with every frame). The backbone cache grows by the
text tokens only; the side state is N tokens per fusion layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion._mechanism import Mechanism
from casa_eval.fusion.layers import (
    FusionSublayer,
    ParallelBatch,
    Projections,
    RopeTable,
    StreamChunk,
    merge_heads,
    rms_norm,
    split_heads,
)
from casa_eval.fusion.window_attention import window_attention


@dataclass
class CrossAttentionState:
    """Image keys/values of the current window, [B, Hkv, n, D] (registers first when present)."""

    k: torch.Tensor
    v: torch.Tensor


class CrossAttentionLayer(FusionSublayer):
    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        spec = config.backbone
        self.head_dim = spec.head_dim
        self.norm = rms_norm(spec.hidden_size, spec.rms_norm_eps)
        self.attn = Projections(spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim)

    # -- hooks for the gated and register variants -------------------------------------------------------

    def prefix_kv(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys/values every text row sees in every window (registers); none for vanilla CA."""
        return None

    def combine(self, hidden: torch.Tensor, attended: torch.Tensor, rows_with_image: torch.Tensor,
                ) -> torch.Tensor:
        """Merge the attention output into the residual stream (gated CA adds tanh gates and an MLP)."""
        return hidden + attended

    # -- shared machinery ------------------------------------------------------------------------------

    def image_kv(self, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = split_heads(self.attn.k_proj(image_tokens), self.head_dim)
        v = split_heads(self.attn.v_proj(image_tokens), self.head_dim)
        return k, v

    def _fixed_kv(self, image_tokens: torch.Tensor | None, batch_size: int,
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
        parts = [p for p in (self.prefix_kv(batch_size),
                             None if image_tokens is None else self.image_kv(image_tokens)) if p is not None]
        if not parts:
            return None
        return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)

    def _queries(self, hidden: torch.Tensor) -> torch.Tensor:
        return split_heads(self.attn.q_proj(self.norm(hidden)), self.head_dim)

    def forward_parallel(self, hidden: torch.Tensor, batch: ParallelBatch, rope: RopeTable) -> torch.Tensor:
        b = hidden.shape[0]
        fixed = [self._fixed_kv(img, b) for img in batch.window_images]
        out = window_attention(self._queries(hidden), None, fixed, batch.layout, backend=batch.backend,
                               cache=batch.cache)
        rows = torch.cat([torch.full((t,), img is not None, device=hidden.device)
                          for t, img in zip(batch.layout.text_counts, batch.window_images, strict=True)])
        return self.combine(hidden, self.attn.o_proj(merge_heads(out)), rows[None, :, None])

    def start_window(self, state: CrossAttentionState | None, image_tokens: torch.Tensor,
                     image_rope: RopeTable | None, continues: bool) -> CrossAttentionState:
        if continues and state is not None:  # consecutive images share one window
            k, v = self.image_kv(image_tokens)
            return CrossAttentionState(torch.cat([state.k, k], 2), torch.cat([state.v, v], 2))
        fixed = self._fixed_kv(image_tokens, image_tokens.shape[0])
        assert fixed is not None
        return CrossAttentionState(*fixed)

    def forward_stream(self, hidden: torch.Tensor, state: CrossAttentionState | None, chunk: StreamChunk,
                       rope: RopeTable) -> tuple[torch.Tensor, CrossAttentionState | None]:
        has_image = state is not None
        if state is None:
            prefix = self.prefix_kv(hidden.shape[0])
            if prefix is None:  # nothing to attend to: the text passes through unchanged
                return self.combine(hidden, torch.zeros_like(hidden), _rows(hidden, False)), None
            state = CrossAttentionState(*prefix)
        q = self._queries(hidden)
        out = F.scaled_dot_product_attention(q, state.k, state.v, enable_gqa=q.shape[1] != state.k.shape[1])
        hidden = self.combine(hidden, self.attn.o_proj(merge_heads(out)), _rows(hidden, has_image))
        return hidden, state if has_image else None


def _rows(hidden: torch.Tensor, value: bool) -> torch.Tensor:
    return torch.full((1, 1, 1), value, dtype=torch.bool, device=hidden.device)


class CrossAttention(Mechanism):
    name = "cross_attention"
    layer_class: type[CrossAttentionLayer] = CrossAttentionLayer

    def make_sublayer(self, index: int, layer: nn.Module) -> FusionSublayer | None:
        return self.layer_class(self.config) if index in (self.config.fusion_layers or ()) else None

    def side_tokens(self, window_image_tokens: int, window_text_tokens: int) -> int:
        return window_image_tokens
