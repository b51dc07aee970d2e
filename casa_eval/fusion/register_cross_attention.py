"""`register_cross_attention`: cross-attention with R learned register keys/values per layer, no gate.

Every text row also sees R content-free registers (per layer and per head), which give attention a place
to put its mass when the image is irrelevant — the role gates play in Flamingo. Text before the first
image attends to the registers alone; no row is zeroed::

          r1..rR  I1 I2 I3 J1 J2 J3
    a       ■■     .  .  .  .  .  .
    b       ■■     .  .  .  .  .  .
    c       ■■     ■  ■  ■  .  .  .
    d       ■■     ■  ■  ■  .  .  .
    e       ■■     .  .  .  ■  ■  ■
    f       ■■     .  .  .  ■  ■  ■

Streaming side state: N + R tokens per fusion layer once an image has arrived (registers are parameters,
materialised with the image keys so one attention call serves both).
"""

from __future__ import annotations

import torch
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion.cross_attention import CrossAttention, CrossAttentionLayer


class RegisterCrossAttentionLayer(CrossAttentionLayer):
    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        spec = config.backbone
        shape = (spec.num_kv_heads, config.registers, spec.head_dim)
        self.register_k = nn.Parameter(torch.randn(shape) * spec.head_dim**-0.5)
        self.register_v = nn.Parameter(torch.randn(shape) * spec.head_dim**-0.5)

    def prefix_kv(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.register_k.expand(batch_size, -1, -1, -1),
                self.register_v.expand(batch_size, -1, -1, -1))

    def combine(self, hidden: torch.Tensor, attended: torch.Tensor, rows_with_image: torch.Tensor,
                ) -> torch.Tensor:
        return hidden + attended  # every row has keys (the registers): nothing is zeroed


class RegisterCrossAttention(CrossAttention):
    name = "register_cross_attention"
    layer_class = RegisterCrossAttentionLayer

    def side_tokens(self, window_image_tokens: int, window_text_tokens: int) -> int:
        return window_image_tokens + self.config.registers if window_image_tokens else 0
