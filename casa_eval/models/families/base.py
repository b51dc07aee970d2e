"""What the four families share: the model wrapper (`FamilyModel`) and the streaming session (`FamilySession`).

A family module (`qwen2_5_vl.py`, `llava.py`, `mllama.py`, `blip2.py`) subclasses `FamilyModel` (what the
checkpoint is: tokens per image, prompt format, ...) and `FamilySession` (how one image enters the cache).
Everything else lives here: the backbone's transformers `DynamicCache`, the padding history, position
bookkeeping, logits, and measuring the cache next to its analytic size. Sessions run the language model's
decoder stack directly on `inputs_embeds` with explicit `position_ids`, the one entry point every transformers
version from 4.45 to 5.x shares (`_compat.py` finds the submodules where each version puts them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from casa_eval.fusion.session import new_dynamic_cache
from casa_eval.models.conversation import PromptFormat
from casa_eval.models.families._compat import language_decoder
from casa_eval.models.families._images import to_pil_images
from casa_eval.streaming.kv import analytic_kv_bytes, cache_bytes, cache_tokens
from casa_eval.streaming.protocol import CacheStats


@dataclass(frozen=True)
class ChatFormat(PromptFormat):
    """A `PromptFormat` whose text part has its own prefix: `after_images(text)` is
    `text_prefix + text + assistant_prefix` (LLaVA's newline after the image, BLIP-2's `</s>Question: `)."""

    text_prefix: str = ""

    def after_images(self, text: str) -> str:
        return self.text_prefix + text + self.assistant_prefix


@dataclass(frozen=True)
class AttentionGeometry:
    """The shape of one group of attention layers' cache: layers x kv_heads x head_dim per token."""

    layers: int
    kv_heads: int
    head_dim: int

    def bytes_per_token(self, dtype_bytes: int) -> int:
        """2 (K and V) x layers x kv_heads x head_dim x bytes per element."""
        return analytic_kv_bytes(layers=self.layers, kv_heads=self.kv_heads, head_dim=self.head_dim, tokens=1,
                                 batch=1, dtype_bytes=dtype_bytes)


def attention_geometry(text_config: Any, layers: int | None = None) -> AttentionGeometry:
    """KV geometry of a decoder config (`head_dim` and `num_key_value_heads` default as in transformers)."""
    heads = int(text_config.num_attention_heads)
    head_dim = getattr(text_config, "head_dim", None) or int(text_config.hidden_size) // heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    return AttentionGeometry(layers=int(text_config.num_hidden_layers if layers is None else layers),
                             kv_heads=int(kv_heads), head_dim=int(head_dim))


# -- the model ----------------------------------------------------------------------------------------------------


class FamilyModel(ABC):
    """A real transformers vision-language checkpoint behind the streaming-model protocol.

    Attributes every family sets: `name`, `tokenizer`, `image_processor`, `hf_model` (the transformers model,
    eval mode), `mechanism`, `prompt_format` (one user turn), `preamble` (text prefilled once at the start of
    every conversation: BOS or the default system prompt), `kv_bytes_per_token` (backbone self-attention cache),
    `cache_tokens_per_image`, `parameters`, `dtype` (e.g. "float32"), `config` (a JSON-able summary).
    """

    family: ClassVar[str] = ""
    mechanism: ClassVar[str] = ""
    session_class: ClassVar[type[FamilySession]]

    def __init__(self, hf_model: Any, tokenizer: Any, image_processor: Any, *, name: str) -> None:
        self.hf_model: Any = hf_model.eval()  # a transformers PreTrainedModel
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.decoder = language_decoder(hf_model)
        self.text_config: Any = hf_model.config.get_text_config()
        self.parameters = sum(p.numel() for p in hf_model.parameters())
        self.compute_dtype = next(self.decoder.parameters()).dtype  # of the language model and its cache
        self.dtype = str(self.compute_dtype).removeprefix("torch.")
        self.kv_dtype_bytes = torch.empty(0, dtype=self.compute_dtype).element_size()
        self.kv_geometry = self.backbone_kv_geometry()
        self.kv_bytes_per_token = self.kv_geometry.bytes_per_token(self.kv_dtype_bytes)
        self.prompt_format: PromptFormat = self.make_prompt_format()
        self.preamble: str = self.make_preamble()
        self.preamble_ids: list[int] = tokenizer(self.preamble, add_special_tokens=False).input_ids if self.preamble \
            else []
        self.config: dict[str, Any] = {
            "family": self.family, "mechanism": self.mechanism, "model_type": hf_model.config.model_type,
            "attn_implementation": getattr(self.text_config, "_attn_implementation", None), **self.config_summary()}

    # -- what a family defines -----------------------------------------------------------------------------------

    @abstractmethod
    def make_prompt_format(self) -> PromptFormat:
        """One user turn in the family's chat format."""

    def make_preamble(self) -> str:
        return ""

    def backbone_kv_geometry(self) -> AttentionGeometry:
        """The layers whose cache is the backbone KV (all of them but Mllama's cross-attention layers)."""
        return attention_geometry(self.text_config)

    def config_summary(self) -> dict[str, Any]:
        """Family-specific numbers for the result record (JSON-able)."""
        return {}

    @property
    @abstractmethod
    def image_tokens_per_image(self) -> int:
        """Visual tokens one image contributes to the model's input (after a Q-Former, its Q queries)."""

    @property
    @abstractmethod
    def cache_tokens_per_image(self) -> int:
        """Backbone KV tokens one image adds."""

    @property
    @abstractmethod
    def frame_size(self) -> int:
        """Side in pixels of the square frames the profiler streams to this model."""

    # -- the streaming-model protocol ------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def max_batch_size(self) -> int | None:
        return None

    def new_session(self, batch_size: int = 1) -> FamilySession:
        return self.session_class(self, batch_size)

    # -- building blocks sessions use ------------------------------------------------------------------------------

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf_model.get_input_embeddings()(ids.to(self.device))

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.hf_model.get_output_embeddings()(hidden)

    def run_decoder(self, embeds: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: Any, **extra: Any) -> torch.Tensor:
        """Final hidden states [B, L, d] of the text decoder, appending to `cache`."""
        out = self.decoder(inputs_embeds=embeds, position_ids=positions,
                           attention_mask=None if attention_mask is None else attention_mask.long(),
                           past_key_values=cache, use_cache=True, **extra)
        return out[0]


# -- the session --------------------------------------------------------------------------------------------------


class FamilySession(ABC):
    """One conversation with a `FamilyModel` (implements `casa_eval.streaming.StreamingSession`).

    The backbone cache is a transformers `DynamicCache`. Text is left-padded per call (`mask` False = padding);
    once padding appears the session keeps the [B, S] padding history and passes it to every later call.
    Positions skip padding, so each sample sees the positions it would see alone. The family's `preamble` is
    prefilled lazily, before the first image or text of the conversation.

    Bookkeeping for `cache_stats`: `text_tokens` (text tokens appended, padding and preamble included, per sample)
    and `image_cache_tokens` (backbone cache tokens appended by images, markers included) are counted from what
    the session fed, never read back from the cache.
    """

    def __init__(self, model: FamilyModel, batch_size: int = 1) -> None:
        limit = model.max_batch_size
        if batch_size < 1 or (limit is not None and batch_size > limit):
            most = "" if limit is None else f" up to {limit}"
            raise ValueError(f"{model.name} sessions accept batch sizes from 1{most}, not {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        device = self.model.device
        self.cache = new_dynamic_cache(self.model.text_config)
        self.positions = torch.zeros(self.batch_size, dtype=torch.long, device=device)  # next position per sample
        self._mask: torch.Tensor | None = None  # [B, S] padding history, kept once padding appears
        self._length = 0
        self._started = False
        self.text_tokens = 0
        self.image_cache_tokens = 0
        self.images_seen = 0

    # -- the protocol ----------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def add_image(self, images: Sequence[Any] | torch.Tensor) -> None:
        pil = to_pil_images(images, self.batch_size)
        self._start()
        self._append_image(pil)
        self.images_seen += 1

    @torch.inference_mode()
    def add_text(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *,
                 all_logits: bool = False) -> torch.Tensor:
        ids = ids.to(self.model.device).long()
        if ids.ndim != 2 or ids.shape[0] != self.batch_size or ids.shape[1] == 0:
            raise ValueError(f"expected token ids [{self.batch_size}, L>0], got {list(ids.shape)}")
        mask = None if mask is None else mask.to(self.model.device).bool()
        self._start()
        hidden = self._append_text(ids, mask)
        return self.model.lm_logits(hidden if all_logits else hidden[:, -1])

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.add_text(token_ids.reshape(-1, 1))

    def cache_stats(self) -> CacheStats:
        tokens = self.text_tokens + self.image_cache_tokens
        return CacheStats(
            kv_tokens=cache_tokens(self.cache),
            kv_bytes=cache_bytes(self.cache),
            analytic_kv_tokens=tokens,
            analytic_kv_bytes=tokens * self.batch_size * self.model.kv_bytes_per_token,
            side_state_tokens=0,
            side_state_bytes=0,
            analytic_side_state_bytes=0,
        )

    # -- what a family defines -------------------------------------------------------------------------------------

    @abstractmethod
    def _append_image(self, images: list[Image.Image]) -> None:
        """Feed one image per sample into the cache (and bump `image_cache_tokens`)."""

    def _decoder_kwargs(self, length: int) -> dict[str, Any]:
        """Extra decoder arguments for a chunk of `length` new tokens (Mllama's cross-attention mask)."""
        return {}

    # -- shared internals ------------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.model.preamble_ids:
            ids = torch.tensor([self.model.preamble_ids], device=self.model.device).expand(self.batch_size, -1)
            self._append_text(ids, None)

    def _append_text(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self._forward(self.model.embed(ids), self._text_positions(ids.shape[1], mask), mask)
        self.text_tokens += ids.shape[1]
        return hidden

    def _insert_image_embeddings(self, embeds: torch.Tensor) -> None:
        """Image embeddings [B, n, D] into the backbone KV at n more 1-D positions (LLaVA, BLIP-2)."""
        n = embeds.shape[1]
        self._forward(embeds, self._text_positions(n, None), None)
        self.image_cache_tokens += n

    def _text_positions(self, length: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Positions [B, L] of the next `length` tokens (padding skipped; pads reuse a neighbour's position, they
        are masked anyway), advancing `self.positions`."""
        device = self.positions.device
        if mask is None:
            offsets = torch.arange(length, device=device).expand(self.batch_size, -1)
            advance: torch.Tensor | int = length
        else:
            offsets = (mask.long().cumsum(1) - 1).clamp(min=0)
            advance = mask.long().sum(1)
        positions = self.positions[:, None] + offsets
        self.positions = self.positions + advance
        return positions

    def _forward(self, embeds: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                 **extra: Any) -> torch.Tensor:
        """Run the decoder on a chunk and append it to the cache; `mask` None means no padding in the chunk.
        `extra` goes to the decoder with `_decoder_kwargs`."""
        b, length = embeds.shape[0], embeds.shape[1]
        if mask is not None or self._mask is not None:
            device = embeds.device
            history = self._mask if self._mask is not None else torch.ones(b, self._length, dtype=torch.bool,
                                                                           device=device)
            new = mask if mask is not None else torch.ones(b, length, dtype=torch.bool, device=device)
            self._mask = torch.cat([history, new], 1)
        self._length += length
        return self.model.run_decoder(embeds, positions, self._mask, self.cache, **self._decoder_kwargs(length),
                                      **extra)


