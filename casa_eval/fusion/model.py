"""`FusionModel`: one backbone + one vision tower + one mechanism, with a parallel and a streaming mode.

Parallel mode (`forward`) runs a whole interleaved conversation at once, training-style, and returns the
logits at every text token plus a language-modelling loss on text targets. Streaming mode
(`new_session`) appends images and text to a persistent cache. Both give the same logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion._mechanism import Mechanism
from casa_eval.fusion.backbone import (
    TORCH_DTYPES,
    build_backbone,
    decoder,
    decoder_layers,
    hf_attention_implementation,
    rotary_embedding,
)
from casa_eval.fusion.casa import Casa
from casa_eval.fusion.casa_shared import CasaShared
from casa_eval.fusion.cross_attention import CrossAttention
from casa_eval.fusion.gated_cross_attention import GatedCrossAttention
from casa_eval.fusion.insertion import Insertion
from casa_eval.fusion.layers import FusedDecoderLayer, FusionRuntime, FusionSublayer, ParallelBatch, RopeTable
from casa_eval.fusion.mechanisms import mechanism_class, short_name
from casa_eval.fusion.qformer import QFormer
from casa_eval.fusion.register_cross_attention import RegisterCrossAttention
from casa_eval.fusion.segments import ImageSegment, Segment, TextSegment, batch_size_of
from casa_eval.fusion.text_only import TextOnly
from casa_eval.fusion.tokenizer import lab_tokenizer, zoo_tokenizer
from casa_eval.fusion.vision import ImageLike, VisionTower, preprocess_images
from casa_eval.fusion.window_attention import WindowLayout, resolve_backend

MECHANISM_CLASSES: dict[str, type[Mechanism]] = {
    cls.name: cls
    for cls in (Insertion, QFormer, CrossAttention, GatedCrossAttention, RegisterCrossAttention, Casa,
                CasaShared, TextOnly)
}


@dataclass
class FusionOutput:
    logits: torch.Tensor | None  # [B, Lt, V] at every text token (None when not requested)
    loss: torch.Tensor | None  # mean next-text-token cross-entropy over valid targets
    text_mask: torch.Tensor | None  # [B, Lt] bool, False = padding


class FusionModel(nn.Module):
    """A zoo model. Build it from a `FusionConfig` (random weights) or `load_checkpoint`."""

    def __init__(self, config: FusionConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        super().__init__()
        self.config = config
        if tokenizer is None:
            tokenizer = lab_tokenizer() if config.tokenizer == "lab" else zoo_tokenizer()
        self.tokenizer = tokenizer
        if len(self.tokenizer) > config.backbone.vocab_size:
            raise ValueError(f"tokenizer has {len(self.tokenizer)} ids but vocab_size is "
                             f"{config.backbone.vocab_size}")
        backend_hf = hf_attention_implementation("flash" if config.attention_backend == "flash" else "sdpa")
        # Same seed, same construction order: every mechanism gets the same backbone and vision weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.backbone = build_backbone(config.backbone, pad_token_id=self.tokenizer.pad_token_id,
                                           eos_token_id=self.tokenizer.eos_token_id,
                                           attn_implementation=backend_hf)
            self.vision = VisionTower(config.vision, config.backbone.hidden_size)
            self.mechanism = mechanism_class(config.mechanism)(config)
            self.runtime = FusionRuntime()
            layers = decoder_layers(self.backbone)
            self.fusion_indices: tuple[int, ...] = ()
            for i in range(len(layers)):
                sublayer = self.mechanism.make_sublayer(i, layers[i])
                if sublayer is not None:
                    layers[i] = FusedDecoderLayer(sublayer, layers[i], self.runtime, i)
                    self.fusion_indices += (i,)
        self.to(TORCH_DTYPES[config.dtype])
        self.eval()

    # -- basic facts ----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "zoo-" + short_name(self.config.mechanism)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.config.dtype]

    @property
    def num_image_tokens(self) -> int:
        return self.config.vision.num_image_tokens

    # -- the rest of the streaming-model protocol ------------------------------------------------------

    @property
    def image_tokens_per_image(self) -> int:
        return self.num_image_tokens if self.mechanism.sees_images else 0

    @property
    def frame_size(self) -> int:
        return self.config.vision.image_size

    @property
    def max_batch_size(self) -> int | None:
        return None  # sessions left-pad text and batch images of one size

    def fusion_sublayers(self) -> dict[int, FusionSublayer]:
        layers = decoder_layers(self.backbone)
        return {i: cast(FusionSublayer, layers[i].fusion) for i in self.fusion_indices}

    def added_parameters(self) -> int:
        """Parameters the mechanism adds to the shared backbone + vision tower (shared weights not counted)."""
        own = {id(p): p for sub in self.fusion_sublayers().values() for p in sub.parameters()}
        own.update({id(p): p for p in self.mechanism.parameters()})
        return sum(p.numel() for p in own.values())

    def attention_backend(self) -> str:
        """The fusion's attention backend on the model's current device and dtype (`auto` resolved), with the
        backbone's self-attention switched to the matching kernel family: flash in the fusion means flash in
        the backbone too, so no mechanism runs half its attention on a slower kernel."""
        backend = resolve_backend(self.config.attention_backend, self.device, self.dtype)
        wanted = hf_attention_implementation("flash" if backend == "flash" else "sdpa")
        if self.backbone_attention() != wanted:
            self.backbone.set_attn_implementation(wanted)
        return backend

    def backbone_attention(self) -> str:
        """transformers' attention implementation the backbone runs now."""
        return str(self.backbone.config._attn_implementation)

    # -- building blocks shared by both modes -----------------------------------------------------------

    def prepare_images(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """PIL images / uint8 arrays -> pixels [B, 3, S, S] on the model's device (CPU preprocessing)."""
        return preprocess_images(images, self.config.vision.image_size).to(self.device)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, S, S] -> shared visual tokens [B, N, d]."""
        return self.vision(pixels.to(self.device))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        embed_tokens = cast(nn.Module, decoder(self.backbone).embed_tokens)
        return embed_tokens(ids.to(self.device))

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.backbone.lm_head(hidden)

    def image_rope(self, positions: torch.Tensor) -> RopeTable:
        """RoPE tables at one position per sample [B] -> ([B, 1, D], [B, 1, D])."""
        ref = torch.empty(0, device=self.device, dtype=self.dtype)
        return rotary_embedding(self.backbone, ref, positions.view(-1, 1).to(self.device))

    def run_backbone(self, embeds: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None,
                     cache: Any = None) -> torch.Tensor:
        """Final hidden states of the decoder stack (no LM head)."""
        out = decoder(self.backbone)(inputs_embeds=embeds, position_ids=positions,
                                     attention_mask=None if attention_mask is None else attention_mask.long(),
                                     past_key_values=cache, use_cache=cache is not None)
        return out.last_hidden_state

    # -- parallel mode ----------------------------------------------------------------------------------

    def forward(self, segments: Sequence[Segment], labels: torch.Tensor | None = None,
                return_logits: bool = True) -> FusionOutput:
        """Teacher-forced pass over a whole conversation.

        `labels` [B, Lt] aligns with the concatenated text tokens (-100 = ignore); by default every
        non-padding text token after the first is a target. Token j is predicted from the last backbone
        position before it (an image token for insertion right after an image, the previous text token
        otherwise).
        """
        segments = list(segments)
        b = batch_size_of(segments)
        texts = [s for s in segments if isinstance(s, TextSegment)]
        if not texts:
            raise ValueError("a conversation needs at least one text segment")
        text_ids = torch.cat([s.ids for s in texts], 1).to(self.device)
        text_mask = _cat_masks([(s.mask, s.length) for s in texts], b, self.device)
        features = self._encode_all(segments)
        if self.mechanism.inserts_tokens:
            stream, stream_mask, text_index = self._interleave(segments, features, b)
        else:
            stream, stream_mask, text_index = self.embed(text_ids), text_mask, None
        positions = _positions(stream_mask, b, stream.shape[1], self.device)
        if self.mechanism.inserts_tokens or not self.mechanism.sees_images or not self.fusion_indices:
            hidden = self.run_backbone(stream, positions, stream_mask)
        else:
            batch = self._parallel_batch(segments, features, text_mask, b)
            with self.runtime.parallel_mode(batch):
                hidden = self.run_backbone(stream, positions, stream_mask)
        text_hidden = hidden if text_index is None else hidden[:, text_index]
        logits = self.lm_logits(text_hidden) if return_logits else None
        loss = self._loss(hidden, text_ids, text_mask, stream_mask, text_index, labels)
        return FusionOutput(logits=logits, loss=loss, text_mask=text_mask)

    def _encode_all(self, segments: Sequence[Segment]) -> list[torch.Tensor]:
        images = [s.pixels for s in segments if isinstance(s, ImageSegment)]
        if not images or not self.mechanism.sees_images:
            return []
        b = images[0].shape[0]
        return list(self.encode_images(torch.cat(images)).split(b))  # one vision call for all images

    def _interleave(self, segments: Sequence[Segment], features: list[torch.Tensor], b: int,
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        parts, masks, text_index, offset, feats = [], [], [], 0, iter(features)
        for seg in segments:
            if isinstance(seg, TextSegment):
                parts.append(self.embed(seg.ids))
                masks.append((seg.mask, seg.length))
                text_index.append(torch.arange(offset, offset + seg.length))
                offset += seg.length
            else:
                tokens = self.mechanism.image_tokens(next(feats))
                parts.append(tokens)
                masks.append((None, tokens.shape[1]))
                offset += tokens.shape[1]
        mask = _cat_masks(masks, b, self.device)
        return torch.cat(parts, 1), mask, torch.cat(text_index).to(self.device)

    def _parallel_batch(self, segments: Sequence[Segment], features: list[torch.Tensor],
                        text_mask: torch.Tensor | None, b: int) -> ParallelBatch:
        counts, feats, previous_image = [0], iter(features), False
        window_images: list[list[torch.Tensor]] = [[]]
        for seg in segments:
            if isinstance(seg, ImageSegment):
                if not previous_image:
                    counts.append(0)
                    window_images.append([])
                window_images[-1].append(next(feats))
                previous_image = True
            else:
                counts[-1] += seg.length
                previous_image = False
        images: list[torch.Tensor | None] = [torch.cat(w, 1) if w else None for w in window_images]
        real = text_mask.long() if text_mask is not None else torch.ones(b, sum(counts), dtype=torch.long,
                                                                          device=self.device)
        text_before = F.pad(real.cumsum(1), (1, 0))  # [B, Lt + 1]: real text tokens before each index
        layout = WindowLayout(tuple(counts))
        ropes: list[RopeTable | None] = [None if img is None else self.image_rope(text_before[:, layout.starts[w]])
                                         for w, img in enumerate(images)]
        return ParallelBatch(layout=layout, window_images=images, image_rope=ropes, text_mask=text_mask,
                             backend=self.attention_backend())

    def _loss(self, hidden: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor | None,
              stream_mask: torch.Tensor | None, text_index: torch.Tensor | None,
              labels: torch.Tensor | None) -> torch.Tensor | None:
        b, lt = text_ids.shape
        if lt < 2:
            return None
        if labels is None:
            labels = text_ids.masked_fill(~text_mask, -100) if text_mask is not None else text_ids
        labels = labels.to(self.device)
        stream_index = text_index if text_index is not None else torch.arange(lt, device=self.device)
        # the predictor of text token j is the last real stream position before it
        length = hidden.shape[1]
        real = stream_mask if stream_mask is not None else torch.ones(b, length, dtype=torch.bool,
                                                                        device=self.device)
        idx = torch.arange(length, device=self.device).expand(b, -1)
        last_real = torch.where(real, idx, -1).cummax(1).values  # [B, S]
        before = (stream_index[1:] - 1).clamp(min=0)
        predictor = last_real[:, before]  # [B, Lt-1]
        targets = labels[:, 1:].masked_fill(predictor < 0, -100)
        picked = hidden.gather(1, predictor.clamp(min=0)[..., None].expand(-1, -1, hidden.shape[-1]))
        logits = self.lm_logits(picked).float()
        if bool((targets == -100).all()):
            return None
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    # -- streaming mode ---------------------------------------------------------------------------------

    def new_session(self, batch_size: int = 1) -> Any:
        from casa_eval.fusion.session import ZooSession

        return ZooSession(self, batch_size)


def _cat_masks(parts: list[tuple[torch.Tensor | None, int]], b: int, device: torch.device,
               ) -> torch.Tensor | None:
    if all(m is None for m, _ in parts):
        return None
    return torch.cat([m.to(device) if m is not None else torch.ones(b, n, dtype=torch.bool, device=device)
                      for m, n in parts], 1)


def _positions(mask: torch.Tensor | None, b: int, length: int, device: torch.device) -> torch.Tensor:
    """Position ids that skip padding (pads get 0; they are masked anyway)."""
    if mask is None:
        return torch.arange(length, device=device).expand(b, -1)
    return (mask.long().cumsum(1) - 1).clamp(min=0)
