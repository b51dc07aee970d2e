"""`gated_cross_attention`: cross-attention plus zero-initialised tanh gates (Flamingo, Llama-3.2-Vision).

Each fusion sublayer is a whole gated block, as in mllama's cross-attention decoder layer::

    h = h + tanh(g_attn) * CA(norm(h))
    h = h + tanh(g_mlp)  * MLP(norm'(h)) * has_image(row)

Both gates start at 0, so at initialisation the model *is* the text-only backbone. Rows with no image
(text before the first image) get neither the attention nor the MLP contribution — the MLP row mask is
what keeps the streaming path (which skips the block until an image arrives) equal to the parallel one.
The mask, the cache and the side state are those of `cross_attention`.
"""

from __future__ import annotations

import torch
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion.cross_attention import CrossAttention, CrossAttentionLayer
from casa_eval.fusion.layers import rms_norm


class GatedCrossAttentionLayer(CrossAttentionLayer):
    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        spec = config.backbone
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.mlp_gate = nn.Parameter(torch.zeros(1))
        self.mlp_norm = rms_norm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False), nn.GELU(),
                                 nn.Linear(spec.intermediate_size, spec.hidden_size, bias=False))

    def combine(self, hidden: torch.Tensor, attended: torch.Tensor, rows_with_image: torch.Tensor,
                ) -> torch.Tensor:
        hidden = hidden + torch.tanh(self.attn_gate) * attended
        mlp = self.mlp(self.mlp_norm(hidden)) * rows_with_image.to(hidden.dtype)
        return hidden + torch.tanh(self.mlp_gate) * mlp


class GatedCrossAttention(CrossAttention):
    name = "gated_cross_attention"
    layer_class = GatedCrossAttentionLayer
