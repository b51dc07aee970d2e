"""What every fusion mechanism tells the zoo model about itself."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion.layers import FusionSublayer


class Mechanism(nn.Module):
    """One way of feeding images to the backbone.

    A mechanism either *inserts* tokens into the backbone's stream (`inserts_tokens`; then
    `image_tokens` maps the N shared visual tokens to what is inserted) or attaches a `FusionSublayer` to
    each fusion layer (`make_sublayer`), or ignores images altogether (`sees_images = False`).
    """

    name: ClassVar[str]
    inserts_tokens: ClassVar[bool] = False
    sees_images: ClassVar[bool] = True

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """[B, N, d] shared visual tokens -> [B, M, d] tokens inserted into the backbone stream."""
        raise TypeError(f"{self.name} does not insert tokens")

    def make_sublayer(self, index: int, layer: nn.Module) -> FusionSublayer | None:
        """The sublayer placed before backbone layer `index` (None: that layer stays plain)."""
        return None

    def inserted_tokens(self, image_tokens: int) -> int:
        """Backbone cache tokens added per image of `image_tokens` visual tokens."""
        return image_tokens if self.inserts_tokens else 0

    def side_tokens(self, window_image_tokens: int, window_text_tokens: int) -> int:
        """Analytic key/value tokens held per fusion layer in streaming (0 when there is no side state)."""
        return 0
