"""`casa_shared`: CASA whose attention reuses the block's own self-attention q/k/v/o projections.

This is the paper's parameter-sharing variant (released as `kyutai/CASA-*-Shared`): the CASA sublayer
before a fusion layer projects with that layer's `self_attn.{q,k,v,o}_proj` (and its per-head q/k norms
where the family has them), so the only parameters it adds are its pre-norm. Mask, streaming semantics and
side state are exactly those of `casa`.
"""

from __future__ import annotations

from torch import nn

from casa_eval.fusion.backbone import self_attention
from casa_eval.fusion.casa import Casa, CasaLayer
from casa_eval.fusion.layers import FusionSublayer


class CasaShared(Casa):
    name = "casa_shared"

    def make_sublayer(self, index: int, layer: nn.Module) -> FusionSublayer | None:
        if index not in (self.config.fusion_layers or ()):
            return None
        return CasaLayer(self.config, projections=self_attention(layer))
