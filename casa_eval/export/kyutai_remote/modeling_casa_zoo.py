"""Remote-code model of a zoo model exported with Kyutai's CASA interface (copied into the export).

The interface is the one Kyutai's scripts call on `kyutai/CASA-*` checkpoints (kyutai-labs/casa, scripts
`eval.py`, `speed_bench_streaming.py`, `live_captioner_ui.py`):

* `generate_from_image(input_ids, pixel_values, image_embeds_insertion_points, max_new_tokens, ...,
  reset_streaming=False, past_key_values=cache)` — prefill a turn (images inserted at the given indices of
  `input_ids`) and decode; returns the prompt ids followed by the generated ids;
* `forward(input_ids, pixel_values=None, past_key_values=cache, __is_first_gen_call__=False, ...)` — append
  tokens to the conversation (e.g. the stop token after a turn) and return their logits;
* `start_ca_streaming_states()` / `reset_ca_streaming_states()` — open / drop the cross-attention streaming
  state (CASA's window), keeping the text KV cache.

The conversation lives in a casa-eval `ZooSession` bound to the caller's `DynamicCache`, so the exported
model streams exactly like the zoo model it came from. Batch size 1.

It is strict where a caller can get Kyutai's calls wrong, so a deviation fails loudly instead of streaming
something else (live_captioner_ui.py is the reference for the manual loop):

* the image's cross-attention state outlives the forward that brought the image only between
  `start_ca_streaming_states()` and `reset_ca_streaming_states()`; without the start call, tokens decoded
  after the prefill run without the image (`generate_from_image` opens and closes its own);
* `pixel_values` is a list of one (h_patches, w_patches, 3 x patch x patch) tensor per image, in the model's
  dtype — what Kyutai's processor gives after `.squeeze(0)`; a batch dimension is an error;
* a forward that brings an image takes `attention_mask` over past + new tokens, as Kyutai's prefill builds it
  (decode steps may pass the new token's mask alone), and `position_ids` counting on from the cache;
* `generate_from_image` stops on `generation_config.eos_token_id` (a list) unless told otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_casa_zoo import CasaZooConfig


class CasaZooModel(PreTrainedModel):
    config_class = CasaZooConfig
    base_model_prefix = "zoo"
    main_input_name = "input_ids"
    # the zoo chooses its own kernels (FusionConfig.attention_backend); any request transformers passes is fine
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flash_attn_2 = True

    def __init__(self, config: CasaZooConfig) -> None:
        super().__init__(config)
        from casa_eval.fusion import FusionConfig, FusionModel

        self.zoo = FusionModel(FusionConfig.model_validate(config.fusion))
        self._session: Any = None
        self._streaming = False  # between start_ca_streaming_states() and reset_ca_streaming_states()
        self.post_init()
        # Kyutai's scripts read eos/pad ids from here; this model generates with its own loop, so transformers
        # does not attach one by itself
        self.generation_config = GenerationConfig(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
                                                  do_sample=False)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights come from the zoo's own initialisation or the checkpoint."""

    # -- streaming state -------------------------------------------------------------------------------

    def _session_for(self, cache: Any) -> Any:
        if self._session is None or (cache is not None and self._session.cache is not cache):
            session = self.zoo.new_session(batch_size=1)
            if cache is not None:
                if cache.get_seq_length() > 0:
                    raise ValueError("past_key_values holds a conversation this model did not build")
                session.cache = cache
            self._session = session
        return self._session

    def start_ca_streaming_states(self) -> None:
        """Keep the image's cross-attention state after the forward that brings it, for the tokens decoded
        after it, until `reset_ca_streaming_states()`."""
        self._streaming = True

    def reset_ca_streaming_states(self) -> None:
        """Drop the cross-attention streaming state (CASA's window); the text KV cache is kept."""
        self._streaming = False
        if self._session is not None:
            self._session.drop_side_state()

    def streaming_state_tensors(self) -> list[torch.Tensor]:
        """The tensors of the cross-attention streaming state (for measuring its memory)."""
        return [] if self._session is None else self._session.side_state_tensors()

    def streaming_state_tokens(self) -> int:
        """Key/value tokens the cross-attention streaming state holds per fusion layer."""
        return 0 if self._session is None else self._session.side_state_tokens()

    # -- the calls Kyutai's scripts make ---------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, pixel_values: Any = None, past_key_values: Any = None,
                use_cache: bool = True, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, image_embeds_insertion_points: Any = None,
                pre_image_tokens: Any = None, post_image_tokens: Any = None,
                **kwargs: Any) -> CausalLMOutputWithPast:
        """Append `input_ids` (batch 1) with the images of `pixel_values` inserted before the given indices.
        Positions are the session's own (text-only positions for CASA, as Kyutai's scripts pass)."""
        if input_ids.shape[0] != 1:
            raise ValueError("the exported zoo model streams one conversation at a time (batch size 1)")
        session = self._session_for(past_key_values)
        past, length = session.cache.get_seq_length(), input_ids.shape[1]
        _check_positions(position_ids, past, length)
        _check_mask(attention_mask, past, length, prefill=pixel_values is not None)
        ids = input_ids[0].to(self.device)
        points = _points(image_embeds_insertion_points)
        images = _images(pixel_values, self.config.fusion["vision"].get("patch_size", 8), self.dtype)
        if len(images) != len(points):
            raise ValueError(f"{len(images)} images for {len(points)} insertion points")
        logits, start = [], 0
        for point, image in zip(points, images, strict=True):
            if point > start:
                logits.append(session.add_text(ids[start:point][None], all_logits=True))
            session.add_image(image)
            start = point
        if start < ids.shape[0]:
            logits.append(session.add_text(ids[start:][None], all_logits=True))
        if images and not self._streaming:  # the image's state is not kept for the tokens that follow
            session.drop_side_state()
        return CausalLMOutputWithPast(logits=torch.cat(logits, 1) if logits else None, past_key_values=session.cache)

    @torch.inference_mode()
    def generate_from_image(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            pixel_values: Any = None, image_embeds_insertion_points: Any = None,
                            max_new_tokens: int = 20, min_new_tokens: int = 0, do_sample: bool = False,
                            temperature: float = 1.0, top_k: int | None = None, eos_token_id: Any = None,
                            pad_token_id: int | None = None, pre_image_tokens: Any = None,
                            post_image_tokens: Any = None, reset_streaming: bool = True,
                            past_key_values: Any = None, logits_processor: Any = None,
                            **kwargs: Any) -> torch.Tensor:
        """Prefill one turn and decode; returns `input_ids` followed by the generated ids. The last
        generated token is not fed back (callers forward it, or the stop token, themselves)."""
        if reset_streaming:
            self._session = None
        self._streaming = True  # generation keeps the image for its decoded tokens
        out = self.forward(input_ids, pixel_values=pixel_values, past_key_values=past_key_values,
                           image_embeds_insertion_points=image_embeds_insertion_points)
        if out.logits is None:
            raise ValueError("the prompt must end with text (the model generates after it)")
        logits = out.logits[:, -1]
        if eos_token_id is None:
            eos_token_id = self.generation_config.eos_token_id
        eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])
        generated: list[int] = []
        for step in range(max_new_tokens):
            scores = logits.float()
            if logits_processor is not None:
                prefix = torch.cat([input_ids, torch.tensor([generated], dtype=torch.long,
                                                            device=input_ids.device)], 1)
                scores = logits_processor(prefix, scores)
            if step < min_new_tokens and eos:
                scores = scores.index_fill(-1, torch.tensor(sorted(eos), device=scores.device), float("-inf"))
            token = _pick(scores, do_sample, temperature, top_k)
            generated.append(int(token))
            if (int(token) in eos and step + 1 >= min_new_tokens) or step + 1 == max_new_tokens:
                break
            logits = self._session.decode(token.view(1))
        if reset_streaming:
            self._session = None
            self._streaming = False
        return torch.cat([input_ids, torch.tensor([generated], dtype=torch.long, device=input_ids.device)], 1)


def _points(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        value = value[0] if value and isinstance(value[0], torch.Tensor) and value[0].dim() == 1 else value
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.flatten().tolist()]
    return [int(v) for v in value]


def _images(value: Any, patch: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Kyutai's pixel layout — a list of (h_patches, w_patches, 3 x patch x patch) tensors in the model's dtype
    — back to the zoo's [1, 3, S, S] images."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError("pixel_values must be a list with one tensor per image")
    out = []
    for t in value:
        if t.dim() != 3 or t.shape[-1] != 3 * patch * patch:
            raise ValueError(f"each pixel_values item must be (h_patches, w_patches, {3 * patch * patch}), "
                             f"got {tuple(t.shape)}")
        if t.dtype != dtype:
            raise ValueError(f"pixel_values are {t.dtype}; the model runs in {dtype}")
        h, w, _ = t.shape
        image = t.float().view(h, w, 3, patch, patch).permute(2, 0, 3, 1, 4).reshape(3, h * patch, w * patch)
        out.append(image[None])
    return out


def _check_positions(position_ids: torch.Tensor | None, past: int, length: int) -> None:
    if position_ids is None:
        return
    expected = torch.arange(past, past + length, device=position_ids.device)
    if position_ids.shape[-1] != length or not bool((position_ids.reshape(-1, length) == expected).all()):
        raise ValueError(f"position_ids must count on from the {past} cached tokens: "
                         f"{position_ids.reshape(-1).tolist()[:8]}...")


def _check_mask(mask: torch.Tensor | None, past: int, length: int, *, prefill: bool) -> None:
    if mask is None:
        return
    allowed = {past + length} if prefill else {length, past + length}
    if mask.shape[-1] not in allowed:
        raise ValueError(f"attention_mask covers {mask.shape[-1]} tokens; a forward that brings an image takes "
                         f"past + new = {past + length} (new tokens only is for decode steps)")


def _pick(scores: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None) -> torch.Tensor:
    if not do_sample or temperature <= 0:
        return scores.argmax(-1)[0]
    scores = scores / temperature
    if top_k:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scores, -1), 1)[0, 0]
