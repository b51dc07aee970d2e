"""Remote-code configuration of a zoo model exported with Kyutai's CASA interface (copied into the export)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class CasaZooConfig(PretrainedConfig):
    """Holds the zoo's FusionConfig (`fusion`) and what Kyutai's processors and scripts read from a config:
    the token ids placed before and after every image, and the frame size."""

    model_type = "casa_zoo"

    def __init__(self, fusion: dict[str, Any] | None = None, pre_image_tokens: list[int] | None = None,
                 post_image_tokens: list[int] | None = None, image_size: int = 64, **kwargs: Any) -> None:
        self.fusion = dict(fusion or {})
        self.pre_image_tokens = list(pre_image_tokens or [])
        self.post_image_tokens = list(post_image_tokens or [])
        self.image_size = image_size
        super().__init__(**kwargs)
