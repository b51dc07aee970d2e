"""The shared vision side: a SigLIP patch encoder plus a projector to the LM width.

Every mechanism consumes the *same* `N` projected tokens per image, so differences in accuracy or cost
come from the fusion alone. Preprocessing is owned here (resize + [-1, 1] scaling, SigLIP's convention)
rather than delegated to an image processor so pixels are identical on every transformers version and no
torchvision is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from casa_eval.fusion._config import VisionConfig

ImageLike = Image.Image | np.ndarray | torch.Tensor


def preprocess_images(images: Sequence[ImageLike], image_size: int) -> torch.Tensor:
    """Images (PIL, HxWx3 uint8 arrays, or 3xHxW float tensors in [0, 1]) -> [B, 3, S, S] float32 in [-1, 1]."""
    out = []
    for image in images:
        if isinstance(image, torch.Tensor):
            t = image.float()
            if t.shape[-2:] != (image_size, image_size):
                t = nn.functional.interpolate(t[None], size=(image_size, image_size), mode="bilinear",
                                              antialias=True, align_corners=False)[0]
            out.append(t * 2.0 - 1.0)
            continue
        pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
        pil = pil.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
        arr = np.asarray(pil, dtype=np.float32) / 127.5 - 1.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out)


class PatchMergeProjector(nn.Module):
    """[B, g*g, d_vis] patch features -> [B, (g/m)^2, d_model]: merge m x m neighbours, then a 2-layer MLP."""

    def __init__(self, vision_dim: int, model_dim: int, merge: int) -> None:
        super().__init__()
        self.merge = merge
        self.fc1 = nn.Linear(vision_dim * merge * merge, model_dim)
        self.fc2 = nn.Linear(model_dim, model_dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, n, d = patches.shape
        m = self.merge
        if m > 1:
            g = round(n**0.5)
            grid = patches.view(b, g // m, m, g // m, m, d).permute(0, 1, 3, 2, 4, 5)
            patches = grid.reshape(b, (g // m) ** 2, m * m * d)
        return self.fc2(nn.functional.gelu(self.fc1(patches)))


def sincos_positions(side: int, dim: int, base: float = 100.0) -> torch.Tensor:
    """[side*side, dim] 2-D sine-cosine position codes, row-major: a quarter of the channels each for
    sin(row), cos(row), sin(column), cos(column) at geometric frequencies (dim must be a multiple of 4)."""
    if dim % 4:
        raise ValueError(f"sincos positions need a width divisible by 4, got {dim}")
    quarter = dim // 4
    freq = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    r, c = rows.reshape(-1, 1) * freq, cols.reshape(-1, 1) * freq
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], 1).float()


class VisionTower(nn.Module):
    """Pixels [B, 3, S, S] -> visual tokens [B, N, d_model]."""

    def __init__(self, spec: VisionConfig, model_dim: int, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.spec = spec
        config = SiglipVisionConfig(
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            vision_use_head=False,
        )
        config._attn_implementation = attn_implementation
        self.encoder = SiglipVisionModel(config)
        if spec.position_init == "sincos":
            embedding = self.encoder.embeddings.position_embedding.weight
            side = spec.image_size // spec.patch_size
            with torch.no_grad():
                embedding.copy_(sincos_positions(side, embedding.shape[1]))
        self.projector = PatchMergeProjector(spec.hidden_size, model_dim, spec.merge)

    @property
    def num_tokens(self) -> int:
        return self.spec.num_image_tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = self.projector.fc1.weight.dtype
        patches = self.encoder(pixel_values=pixels.to(dtype)).last_hidden_state
        return self.projector(patches)
