"""`ZooSession`: a zoo model's streaming conversation (implements `casa_eval.streaming.StreamingSession`).

Every mechanism keeps the backbone's transformers `DynamicCache` (the same cache class for all, so the
comparison is fair) plus, for the CA family and CASA, a per-fusion-layer side state:

* insertion / qformer: `add_image` runs the N (or Q) image tokens through the backbone into the cache;
* CA family: `add_image` projects the image K/V once and *replaces* the previous ones;
* CASA: `add_image` opens a new window (image K/V, empty window text); text K/V join the window as they
  are prefilled or decoded, and are dropped at the next image;
* text_only: `add_image` does nothing.

Nothing of a past image is ever re-projected at a decode step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from casa_eval.fusion.layers import StreamChunk
from casa_eval.streaming.kv import analytic_kv_bytes, cache_bytes, cache_tokens, tensor_bytes
from casa_eval.streaming.protocol import CacheStats

if TYPE_CHECKING:
    from casa_eval.fusion.model import FusionModel


def new_dynamic_cache(config: Any = None) -> DynamicCache:
    if config is None:
        return DynamicCache()
    try:
        return DynamicCache(config=config)  # transformers >= 4.56 (knows sliding-window layers)
    except TypeError:
        return DynamicCache()


class ZooSession:
    def __init__(self, model: FusionModel, batch_size: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        b, device = self.batch_size, self.model.device
        self.model.attention_backend()  # resolves `auto` on this device, the backbone's kernels with it
        self.cache = new_dynamic_cache(self.model.backbone.config)
        self.states: dict[int, Any] = {}
        self.positions = torch.zeros(b, dtype=torch.long, device=device)  # next backbone position
        self.text_seen = torch.zeros(b, dtype=torch.long, device=device)  # real text tokens so far
        self._mask: torch.Tensor | None = None  # [B, S] padding history, kept once padding appears
        self._length = 0
        self._previous_image = False
        self.images_seen = 0
        self.text_tokens = 0  # text tokens appended (padding included), per sample
        self.window_image_tokens = 0
        self.window_text_tokens = 0

    # -- the protocol -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def add_image(self, images: Sequence[Any] | torch.Tensor) -> None:
        model, mechanism = self.model, self.model.mechanism
        pixels = images if isinstance(images, torch.Tensor) else model.prepare_images(images)
        if pixels.shape[0] != self.batch_size:
            raise ValueError(f"got {pixels.shape[0]} images for a batch of {self.batch_size}")
        if not mechanism.sees_images:
            return
        features = model.encode_images(pixels)
        if mechanism.inserts_tokens:
            self._run(mechanism.image_tokens(features), None, fused=False)
        else:
            rope = model.image_rope(self.text_seen)
            for index, sublayer in model.fusion_sublayers().items():
                self.states[index] = sublayer.start_window(self.states.get(index), features, rope,
                                                           continues=self._previous_image)
        if not self._previous_image:
            self.window_image_tokens = self.window_text_tokens = 0
        self.window_image_tokens += features.shape[1]
        self._previous_image = True
        self.images_seen += 1

    @torch.inference_mode()
    def add_text(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *,
                 all_logits: bool = False) -> torch.Tensor:
        ids = ids.to(self.model.device)
        mask = None if mask is None else mask.to(self.model.device)
        fused = bool(self.model.fusion_indices) and self.model.mechanism.sees_images
        hidden = self._run(self.model.embed(ids), mask, fused=fused)
        self.text_seen += ids.shape[1] if mask is None else mask.sum(1)
        self.text_tokens += ids.shape[1]
        self.window_text_tokens += ids.shape[1]
        self._previous_image = False
        return self.model.lm_logits(hidden if all_logits else hidden[:, -1])

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.add_text(token_ids.view(-1, 1))

    def drop_side_state(self) -> None:
        """Forget the cross-attention streaming state (CASA's window, CA image K/V); keep the KV cache.
        Text added next forms a text-only window until the next image."""
        self.states.clear()
        self.window_image_tokens = self.window_text_tokens = 0
        self._previous_image = False

    def side_state_tensors(self) -> list[torch.Tensor]:
        """The tensors of the cross-attention streaming state (CASA's window, CA image K/V), every fusion layer."""
        return [t for i, s in self.model.fusion_sublayers().items() for t in s.state_tensors(self.states.get(i))]

    def side_state_tokens(self) -> int:
        """Key/value tokens the streaming state holds per fusion layer."""
        sublayers = self.model.fusion_sublayers()
        return max((s.state_tokens(self.states.get(i)) for i, s in sublayers.items()), default=0)

    def cache_stats(self) -> CacheStats:
        model = self.model
        spec, b = model.config.backbone, self.batch_size
        dtype_bytes = torch.empty(0, dtype=model.dtype).element_size()
        sublayers = model.fusion_sublayers()
        expected_tokens = self.text_tokens + self.images_seen * model.mechanism.inserted_tokens(
            model.num_image_tokens)
        expected_side = model.mechanism.side_tokens(self.window_image_tokens, self.window_text_tokens)

        def analytic(layers: int, tokens: int) -> int:
            return analytic_kv_bytes(layers=layers, kv_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                                     tokens=tokens, batch=b, dtype_bytes=dtype_bytes)

        return CacheStats(
            kv_tokens=cache_tokens(self.cache),
            kv_bytes=cache_bytes(self.cache),
            analytic_kv_tokens=expected_tokens,
            analytic_kv_bytes=analytic(spec.num_layers, expected_tokens),
            side_state_tokens=self.side_state_tokens(),
            side_state_bytes=tensor_bytes(self.side_state_tensors()),
            analytic_side_state_bytes=analytic(len(sublayers), expected_side),
        )

    # -- internals --------------------------------------------------------------------------------------

    def _run(self, embeds: torch.Tensor, mask: torch.Tensor | None, *, fused: bool) -> torch.Tensor:
        b, length = embeds.shape[0], embeds.shape[1]
        if mask is not None or self._mask is not None:
            history = self._mask if self._mask is not None else torch.ones(b, self._length, dtype=torch.bool,
                                                                           device=embeds.device)
            new = mask if mask is not None else torch.ones(b, length, dtype=torch.bool, device=embeds.device)
            self._mask = torch.cat([history, new], 1)
        if mask is None:
            offsets = torch.arange(length, device=embeds.device).expand(b, -1)
        else:
            offsets = (mask.long().cumsum(1) - 1).clamp(min=0)
        positions = self.positions[:, None] + offsets
        self.positions += length if mask is None else mask.sum(1)
        self._length += length
        if not fused:
            return self.model.run_backbone(embeds, positions, self._mask, self.cache)
        chunk = StreamChunk(self.states, mask, self.model.attention_backend())
        with self.model.runtime.stream_mode(chunk):
            return self.model.run_backbone(embeds, positions, self._mask, self.cache)
