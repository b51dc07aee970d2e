"""Mllama (Llama-3.2-Vision): gated cross-attention, `MllamaForConditionalGeneration`.

The text decoder interleaves self-attention layers with cross-attention layers (`cross_attention_layers`)
whose queries are text and whose keys/values are an image's projected tile features, added through tanh gates.
An image is cut into up to `max_num_tiles` tiles of `image_size` px; each tile gives `(image_size /
patch_size)^2 + 1` features, and transformers caches `max_num_tiles` tiles per image (padding tiles included,
masked out of attention) — that is `image_tokens_per_image`.

`add_image` runs the vision model and projector, then appends the `<|image|>` token (a regular text token in the
self-attention cache: `cache_tokens_per_image` is 1) with the image's states, so each cross-attention layer
projects the image K/V and stores them itself, in the same `DynamicCache` at the cross-attention layers'
indices — whatever this transformers version stores there. `cache_stats()` reports the cross-attention
layers' K/V as *side state* and only the self-attention layers as the backbone KV.

`cross_attention_cache` chooses what happens to the previous images' K/V. Which images text attends to follows
transformers' processor mask (`get_cross_attention_token_mask`): the text from an `<|image|>` token up to the next
one attends to that image — to the latest run of consecutive images.

* ``"latest"`` (default) — the model's semantics, kept without waste: the K/V of the latest run of consecutive
  images, dropped when the next run starts. The same logits as transformers in every case (the images it drops
  are the ones the mask hides) and a side state of one image per turn. Cost comparisons use this.
* ``"append"`` — what transformers' cache does: every new image's K/V are *appended* (its cross-attention layer
  calls `past_key_values.update`), so the side state grows by `image_tokens_per_image` per image, the older
  images cached but masked. Labelled as transformers' cache: it measures the implementation, not the mechanism.
* ``"replace"`` — only the latest image's K/V: differs from the model when several images arrive back to back
  (the model attends to all of them, replace to the last).

Two differences from transformers' own full forward, both by construction of a stream:

* transformers lets text *before* the first `<|image|>` of a forward pass attend to that image (its rows of
  the cross-attention mask are empty, `_prepare_cross_attention_mask` turns them into "attend everywhere", and
  only the MLP output is zeroed). A stream cannot see an image before it arrives: text prefilled before any
  image skips the cross-attention layers, as transformers itself does when no image is cached.
* The real tokenizer (Llama 3's tiktoken BPE, 128k ids) is not available offline; tiny checkpoints use
  OpenAI's GPT-2 BPE plus Llama 3's chat special tokens (`<|image|>`, `<|begin_of_text|>`,
  `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>`, `<|finetune_right_pad_id|>`).

Prompt format: Llama 3's chat template (`<|start_header_id|>user<|end_header_id|>\\n\\n<|image|>...<|eot_id|>`),
with `<|begin_of_text|>` as the session's preamble.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

import torch
from PIL import Image

from casa_eval.models.conversation import PromptFormat
from casa_eval.models.families._checkpoint import load_family, save_checkpoint, token_id
from casa_eval.models.families._compat import TRANSFORMERS_VERSION, empty_layer, find_submodule, layer_kv, layer_tokens
from casa_eval.models.families._tokenizers import gpt2_tokenizer
from casa_eval.models.families.base import AttentionGeometry, FamilyModel, FamilySession, attention_geometry
from casa_eval.streaming.kv import tensor_bytes
from casa_eval.streaming.protocol import CacheStats

CrossAttentionCache = Literal["latest", "append", "replace"]
CROSS_ATTENTION_CACHE_POLICIES: tuple[CrossAttentionCache, ...] = ("latest", "append", "replace")
LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                         "<|image|>", "<|finetune_right_pad_id|>")
TINY_TILE_SIZE = 56  # 4 x 4 patches of 14 px + CLS = 17 features per tile
TINY_MAX_TILES = 2


def check_cross_attention_cache(policy: str) -> CrossAttentionCache:
    if policy not in CROSS_ATTENTION_CACHE_POLICIES:
        raise ValueError(f"cross_attention_cache must be one of {', '.join(CROSS_ATTENTION_CACHE_POLICIES)}, "
                         f"not {policy!r}")
    return cast(CrossAttentionCache, policy)


class MllamaFamily(FamilyModel):
    family = "mllama"
    mechanism = "gated_cross_attention"

    def __init__(self, hf_model: Any, tokenizer: Any, image_processor: Any, *, name: str,
                 cross_attention_cache: CrossAttentionCache = "latest") -> None:
        check_cross_attention_cache(cross_attention_cache)
        self.cross_attention_cache: CrossAttentionCache = cross_attention_cache
        super().__init__(hf_model, tokenizer, image_processor, name=name)
        self.cross_layers: tuple[int, ...] = tuple(sorted(self.text_config.cross_attention_layers))
        self.self_layers = tuple(i for i in range(self.text_config.num_hidden_layers) if i not in self.cross_layers)
        self.cross_kv_geometry = attention_geometry(self.text_config, layers=len(self.cross_layers))
        self.image_token_id = int(hf_model.config.image_token_index)
        vision = hf_model.config.vision_config
        self.max_tiles = int(vision.max_num_tiles)
        self.tile_tokens = (int(vision.image_size) // int(vision.patch_size)) ** 2 + 1  # patches + CLS

    def backbone_kv_geometry(self) -> AttentionGeometry:
        cross = len(self.text_config.cross_attention_layers)
        return attention_geometry(self.text_config, layers=self.text_config.num_hidden_layers - cross)

    def make_prompt_format(self) -> PromptFormat:
        return PromptFormat(user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
                            assistant_prefix="<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                            turn_end="<|eot_id|>")

    def make_preamble(self) -> str:
        return self.tokenizer.bos_token or ""

    def config_summary(self) -> dict[str, Any]:
        text, vision = self.text_config, self.hf_model.config.vision_config
        return {"text_layers": text.num_hidden_layers, "cross_attention_layers": list(text.cross_attention_layers),
                "hidden_size": text.hidden_size, "kv_heads": self.kv_geometry.kv_heads,
                "head_dim": self.kv_geometry.head_dim, "vocab_size": text.vocab_size,
                "vision_layers": vision.num_hidden_layers, "vision_global_layers": vision.num_global_layers,
                "image_size": vision.image_size, "patch_size": vision.patch_size,
                "max_num_tiles": vision.max_num_tiles, "cross_attention_cache": self.cross_attention_cache}

    @property
    def frame_size(self) -> int:
        """One tile: a square frame of this side is one tile, never resized."""
        return int(self.hf_model.config.vision_config.image_size)

    @property
    def image_tokens_per_image(self) -> int:
        """Features one image puts in each cross-attention layer's cache (padding tiles included)."""
        return self.max_tiles * self.tile_tokens

    @property
    def cache_tokens_per_image(self) -> int:
        return 1  # the <|image|> token

    def cross_attention_states(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected tile features [B, tiles x tile_tokens, d] of one image per sample (vision model, then the
        projector, as transformers computes them), and the valid-tile mask [B, tiles]."""
        inputs = self.image_processor(images=[[image] for image in images], return_tensors="pt")
        vision = find_submodule(self.hf_model, "vision_model")
        projector = find_submodule(self.hf_model, "multi_modal_projector")
        out = vision(pixel_values=inputs["pixel_values"].to(self.device, next(vision.parameters()).dtype),
                     aspect_ratio_ids=inputs["aspect_ratio_ids"].to(self.device),
                     aspect_ratio_mask=inputs["aspect_ratio_mask"].to(self.device))
        states = projector(out[0]).reshape(len(images), -1, self.text_config.hidden_size)
        tiles = inputs["aspect_ratio_mask"][:, 0].to(self.device).bool()
        return states, tiles


class MllamaSession(FamilySession):
    model: MllamaFamily

    def reset(self) -> None:
        super().reset()
        self.tile_masks: list[torch.Tensor] = []  # [B, tiles] per image whose K/V are cached, in cache order
        self.group_start = 0  # first cached image of the latest run of consecutive images
        self._previous_image = False
        self._row_mask: tuple[torch.Tensor, torch.Tensor] | None = None

    def add_text(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *,
                 all_logits: bool = False) -> torch.Tensor:
        logits = super().add_text(ids, mask, all_logits=all_logits)
        self._previous_image = False
        return logits

    def _append_image(self, images: list[Image.Image]) -> None:
        model = self.model
        states, tiles = model.cross_attention_states(images)
        if model.cross_attention_cache == "replace" or (model.cross_attention_cache == "latest"
                                                        and not self._previous_image):
            for index in model.cross_layers:
                empty_layer(self.cache, index)
            self.tile_masks, self.group_start = [tiles], 0
        else:
            if not self._previous_image:
                self.group_start = len(self.tile_masks)
            self.tile_masks.append(tiles)
        self._previous_image = True
        self._update_row_mask()
        # The <|image|> token is ordinary text to the self-attention layers. Running it with the image's states lets
        # every cross-attention layer project and cache the image K/V itself (`past_key_values.update`), so the
        # cache holds exactly what this transformers version stores (K before or after k_norm, heads repeated or
        # not), and the token attends to its image as the processor's mask says.
        ids = torch.full((self.batch_size, 1), model.image_token_id, device=model.device)
        self._forward(model.embed(ids), self._text_positions(1, None), None,
                      cross_attention_states=states.to(model.compute_dtype))
        self.image_cache_tokens += 1

    def _decoder_kwargs(self, length: int) -> dict[str, Any]:
        if self._row_mask is None:
            return {}  # no image yet: the decoder skips its cross-attention layers
        mask, full_rows = self._row_mask  # every new token attends alike: one row, expanded to the chunk
        return {"cross_attention_mask": mask.expand(-1, -1, length, -1),
                "full_text_row_masked_out_mask": full_rows.expand(-1, -1, length, -1)}

    def _update_row_mask(self) -> None:
        """The cross-attention mask row of new tokens: the valid tiles of the latest run of images, as transformers'
        processor mask gives them, turned into the additive mask by transformers' own `_prepare_cross_attention_mask`
        (rebuilt only when an image arrives, not at every decode step)."""
        from transformers.models.mllama.modeling_mllama import _prepare_cross_attention_mask

        attend = torch.stack(self.tile_masks, 1).clone()  # [B, images, tiles]
        attend[:, :self.group_start] = False
        dtype: Any = self.model.compute_dtype  # annotated `str` in transformers, but a torch.dtype is what it uses
        self._row_mask = _prepare_cross_attention_mask(attend[:, None].long(), num_vision_tokens=self.model.tile_tokens,
                                                       dtype=dtype)

    def cache_stats(self) -> CacheStats:
        model, b = self.model, self.batch_size
        kv = [t for i in model.self_layers for t in layer_kv(self.cache, i)]
        side = [t for i in model.cross_layers for t in layer_kv(self.cache, i)]
        tokens = self.text_tokens + self.image_cache_tokens
        side_tokens = len(self.tile_masks) * model.image_tokens_per_image
        return CacheStats(
            kv_tokens=layer_tokens(self.cache, model.self_layers[0]),
            kv_bytes=tensor_bytes(kv),
            analytic_kv_tokens=tokens,
            analytic_kv_bytes=tokens * b * model.kv_bytes_per_token,
            side_state_tokens=layer_tokens(self.cache, model.cross_layers[0]),
            side_state_bytes=tensor_bytes(side),
            analytic_side_state_bytes=side_tokens * b * model.cross_kv_geometry.bytes_per_token(model.kv_dtype_bytes),
        )


MllamaFamily.session_class = MllamaSession


def _default_rope(theta: float) -> dict[str, Any]:
    """Plain RoPE (real checkpoints use Llama 3 scaling). transformers 4.x needs an explicit `rope_scaling` for
    Mllama (its rotary embedding indexes it); 5.x moved RoPE settings to `rope_parameters`."""
    if TRANSFORMERS_VERSION >= (5, 0):
        return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}}
    return {"rope_theta": theta, "rope_scaling": {"rope_type": "default"}}


def load(path: str | Path, *, device: torch.device, dtype: str | None = None,
         cross_attention_cache: CrossAttentionCache = "latest") -> MllamaFamily:
    family: MllamaFamily = load_family(MllamaFamily, "MllamaForConditionalGeneration", "mllama", path, device=device,
                                       dtype=dtype, name_suffix=f"-{cross_attention_cache}",
                                       cross_attention_cache=cross_attention_cache)
    return family


def write_tiny(out: Path, *, seed: int = 0) -> Path:
    """A tiny random Mllama: 4 text layers of width 64 (self, cross, self, cross), a 2 + 1-layer tiled vision
    encoder at 56 px with up to 2 tiles; about 7M parameters. The tanh gates, zero at initialisation in
    transformers (which would make images invisible), are drawn at random so the cross-attention path is live."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor

    tok = gpt2_tokenizer(pad_token="<|finetune_right_pad_id|>", bos_token="<|begin_of_text|>",
                         eos_token="<|eot_id|>", additional_special_tokens=LLAMA3_SPECIAL_TOKENS)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_global_layers=1, attention_heads=4,
                  image_size=TINY_TILE_SIZE, patch_size=14, max_num_tiles=TINY_MAX_TILES,
                  intermediate_layers_indices=[1], vision_output_dim=128,
                  supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                cross_attention_layers=[1, 3], num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **_default_rope(500_000.0))
    # Sub-configs as dicts: `MllamaTextConfig` is not exported at the top level of transformers < 4.52.
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=token_id(tok, "<|image|>"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MllamaForConditionalGeneration(config).eval()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.rsplit(".", 1)[-1].endswith("gate"):
                    parameter.uniform_(0.5, 1.0)
    processor = MllamaImageProcessor(
        size={"height": TINY_TILE_SIZE, "width": TINY_TILE_SIZE}, max_image_tiles=TINY_MAX_TILES)
    return save_checkpoint(out, model, tok, processor)
