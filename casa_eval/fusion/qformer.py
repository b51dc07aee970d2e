"""`qformer`: Q learned queries compress the N visual tokens, which are then inserted (BLIP-2, Perceiver).

Inside the compressor the queries attend to each other and to all N image tokens (no mask); the Q
outputs replace the image in the backbone stream, so the backbone's mask is `insertion`'s with each
image block shortened to Q tokens. Streaming: the cache grows by Q + t tokens per turn. The whole
compressor (queries, blocks, output projection) is the added parameter count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion._mechanism import Mechanism
from casa_eval.fusion.layers import merge_heads, rms_norm, split_heads


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(x), self.head_dim)
        k, v = (split_heads(t, self.head_dim) for t in self.kv(context).chunk(2, dim=-1))
        return self.o(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class QFormerBlock(nn.Module):
    """Pre-norm block: query self-attention, cross-attention to the image, MLP."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.self_norm, self.cross_norm, self.mlp_norm = (rms_norm(dim, eps) for _ in range(3))
        self.self_attn = _Attention(dim, heads)
        self.cross_attn = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.self_norm(queries)
        queries = queries + self.self_attn(x, x)
        queries = queries + self.cross_attn(self.cross_norm(queries), image)
        return queries + self.mlp(self.mlp_norm(queries))


class QFormer(Mechanism):
    name = "qformer"
    inserts_tokens = True

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        spec = config.backbone
        dim = spec.hidden_size
        self.queries = nn.Parameter(torch.randn(config.qformer_queries, dim) * 0.02)
        self.image_norm = rms_norm(dim, spec.rms_norm_eps)
        self.blocks = nn.ModuleList(QFormerBlock(dim, spec.num_heads, spec.rms_norm_eps)
                                    for _ in range(config.qformer_layers))
        self.out_norm = rms_norm(dim, spec.rms_norm_eps)
        self.out_proj = nn.Linear(dim, dim)

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        image = self.image_norm(features)
        queries = self.queries.to(features.dtype).expand(features.shape[0], -1, -1)
        for block in self.blocks:
            queries = block(queries, image)
        return self.out_proj(self.out_norm(queries))

    def inserted_tokens(self, image_tokens: int) -> int:
        return self.config.qformer_queries
