"""The reference for Kyutai's remote-code checkpoints: `generate_from_image`, called as Kyutai's scripts call it.

A turn is `processor.tokenize_messages` (Kyutai's system prompt first for the Qwen-based models, no BOS after the
first turn) and `generate_from_image(input_ids, pixel_values=[the processor's pixels squeezed, in the model's
dtype], image_embeds_insertion_points, max_new_tokens, pre_image_tokens, post_image_tokens, eos_token_id,
pad_token_id)` (eval.py). Kyutai's conversations continue on one cache (`past_key_values=cache,
reset_streaming=False`, speed_bench_streaming.py): between turns the answer's stop token — the generated one, else
the first of the checkpoint's list — is forwarded and `reset_ca_streaming_states()` closes the image's window
(live_captioner_ui.py:304-305). So the second turn's reference is `generate_from_image` continuing that
conversation.

The logits are read with a `logits_processor` that records the scores it is given and changes nothing; a
checkpoint whose `generate_from_image` never calls it is compared on tokens only.
"""

from __future__ import annotations

from typing import Any

import torch

from casa_eval.models.kyutai import SYSTEM_PROMPT, KyutaiModel
from casa_eval.streaming import GenerationConfig
from casa_eval.verification.inputs import Conversation
from casa_eval.verification.streamed import TurnTrace


class _ScoreRecorder:
    """A transformers logits processor that keeps a copy of every step's scores and returns them unchanged."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores[0].float().cpu())
        return scores


def kyutai_reference(model: KyutaiModel, conversation: Conversation, config: GenerationConfig) -> list[TurnTrace]:
    from transformers import DynamicCache, LogitsProcessorList

    hf, processor = model.hf, model.processor
    device, dtype = model.device, next(hf.parameters()).dtype
    eos = hf.generation_config.eos_token_id
    stops = [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
    cache = DynamicCache()
    hf.reset_ca_streaming_states()
    traces: list[TurnTrace] = []
    with torch.inference_mode():
        for index, turn in enumerate(conversation.turns):
            if traces:  # close the previous answer in its window, then drop the window
                last = traces[-1].tokens[-1]
                _forward(model, cache, [last] if last in stops else [last, stops[0]])
                hf.reset_ca_streaming_states()
            content: list[dict[str, Any]] = [{"type": "image", "image": None}, {"type": "text", "text": turn.question}]
            messages = ([{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}]
                        if model.is_qwen and index == 0 else [])
            messages.append({"role": "user", "content": content})
            inputs = processor.tokenize_messages(messages, suppress_bos_token=index > 0)
            pixels = processor.image_processor.process_images(turn.image, img_size=model.frame_size)
            input_ids = inputs["input_ids"].to(device)
            recorder = _ScoreRecorder()
            out = hf.generate_from_image(
                input_ids=input_ids, pixel_values=[pixels.squeeze(0).to(device, dtype)],
                image_embeds_insertion_points=inputs["image_embeds_insertion_points"],
                max_new_tokens=config.max_new_tokens, pre_image_tokens=list(processor.pre_image_tokens),
                post_image_tokens=list(processor.post_image_tokens), eos_token_id=eos,
                pad_token_id=hf.generation_config.pad_token_id, reset_streaming=False, past_key_values=cache,
                logits_processor=LogitsProcessorList([recorder]))
            traces.append(TurnTrace(tokens=[int(t) for t in out[0, input_ids.shape[1]:]], logits=recorder.scores,
                                    cache_tokens=int(cache.get_seq_length())))
    return traces


def _forward(model: KyutaiModel, cache: Any, ids: list[int]) -> None:
    """Kyutai's decode-step forward (live_captioner_ui.py `_decode`): the new tokens' mask, positions counted on
    from the cache (`(3, 1, L)` for the Qwen-based models)."""
    past, length, device = cache.get_seq_length(), len(ids), model.device
    positions = torch.arange(past, past + length, device=device)
    positions = positions.view(1, 1, length).expand(3, 1, length) if model.is_qwen else positions[None]
    model.hf.forward(torch.tensor([ids], device=device), past_key_values=cache, use_cache=True,
                     attention_mask=torch.ones(1, length, dtype=torch.long, device=device), position_ids=positions,
                     __is_first_gen_call__=False)
