"""Images as the families' transformers image processors want them: one RGB PIL image per sample.

Converting everything to PIL first keeps the processors from guessing the channel axis of small arrays, and
makes PIL images, arrays and tensors of the same picture give the same pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


def to_pil_images(images: Any, batch_size: int) -> list[Image.Image]:
    """One RGB PIL image per sample from PIL images, HxWx3 (or HxW) arrays, 3xHxW tensors, a list of those, or a
    stacked [B, H, W, 3] array / [B, 3, H, W] tensor. Float arrays and tensors are read as values in [0, 1].

    Raises ValueError when the count does not match `batch_size`.
    """
    if isinstance(images, Image.Image) or (isinstance(images, np.ndarray | torch.Tensor) and images.ndim in (2, 3)):
        items: list[Any] = [images]
    else:
        items = list(images)
    if len(items) != batch_size:
        raise ValueError(f"got {len(items)} images for a batch of {batch_size} (one image per sample)")
    return [_to_pil(item) for item in items]


def _to_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.permute(1, 2, 0) if image.ndim == 3 else image).numpy()  # CHW -> HWC
    array = np.asarray(image)
    if array.dtype != np.uint8:
        scaled = array.astype(np.float64) * 255.0 if np.issubdtype(array.dtype, np.floating) else array
        array = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")
