"""The reference for a transformers family: the checkpoint's own `generate` over the whole conversation so far.

Each turn's reference is one `model.generate(do_sample=False, output_logits=True)` call on the conversation up
to that turn, in transformers' input format: the text tokens as the family's chat format writes them, each image
replaced by the tokens its processor puts in the prompt (Qwen2.5-VL: `<|vision_start|>` + one `<|image_pad|>` per
merged patch + `<|vision_end|>`; LLaVA: N `<image>`; BLIP-2: Q `<image>`; Mllama: one `<|image|>` and the
processor's cross-attention mask), with the image processor's pixels. Earlier answers enter as the ids the
reference generated (re-tokenizing their text could give other ids), followed by the format's turn end.

Mllama: transformers' full forward lets text before the first `<|image|>` attend to that image, which a stream
cannot (`families/mllama.py`); the reference prefills that text on its own and `generate` continues from that
cache, as the family tests do. On transformers 4.x Mllama's `generate` drops the image when continuing from a
cache, so there the reference cannot run.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from PIL import Image

from casa_eval.errors import UserError
from casa_eval.fusion.session import new_dynamic_cache
from casa_eval.models.families import FamilyModel
from casa_eval.models.families._compat import TRANSFORMERS_VERSION
from casa_eval.streaming import GenerationConfig
from casa_eval.verification.inputs import Conversation
from casa_eval.verification.streamed import TurnTrace

Segment = list[int] | Image.Image


def family_reference(model: FamilyModel, conversation: Conversation, config: GenerationConfig) -> list[TurnTrace]:
    if model.family == "mllama" and TRANSFORMERS_VERSION < (5, 0):
        raise UserError("verifying an Mllama checkpoint needs transformers >= 5 (on 4.x its generate drops the "
                        "image when continuing from a cache)")
    fmt, stops = model.prompt_format, list(config.eos_token_ids)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else stops[0]
    turn_end = _ids(model, fmt.turn_end)
    segments: list[Segment] = []
    traces = []
    for index, turn in enumerate(conversation.turns):
        before = (model.preamble_ids if index == 0 else []) + _ids(model, fmt.before_images())
        segments += [before, turn.image, _ids(model, fmt.after_images(turn.question))]
        inputs = _inputs(model, segments)
        prompt = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = model.hf_model.generate(**inputs, do_sample=False, max_new_tokens=config.max_new_tokens,
                                          min_new_tokens=config.min_new_tokens, eos_token_id=stops, pad_token_id=pad,
                                          output_logits=True, return_dict_in_generate=True)
        generated = [int(t) for t in out.sequences[0, prompt:]]
        traces.append(TurnTrace(tokens=generated, logits=[step[0].float().cpu() for step in out.logits],
                                cache_tokens=int(out.past_key_values.get_seq_length())))
        # the answer as generated, then the turn end (whose leading stop token the answer may already hold)
        ending = turn_end[1:] if generated and turn_end[:1] == generated[-1:] and generated[-1] in stops \
            else turn_end
        segments.append(generated + ending)
    return traces


def _ids(model: FamilyModel, text: str) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=False).input_ids)


def _image_ids(model: FamilyModel, image: Image.Image) -> list[int]:
    """The prompt tokens that stand for one image in transformers' input format."""
    config: Any = model.hf_model.config
    if model.family == "qwen2_5_vl":
        grid = model.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        n = int(grid.prod()) // config.vision_config.spatial_merge_size ** 2
        return [config.vision_start_token_id, *[config.image_token_id] * n, config.vision_end_token_id]
    if model.family == "mllama":
        return [config.image_token_index]
    return [config.image_token_index] * model.image_tokens_per_image  # llava, blip2


def _inputs(model: FamilyModel, segments: list[Segment]) -> dict[str, Any]:
    """`generate`'s keyword arguments for the conversation `segments` (batch 1), on the model's device."""
    ids: list[int] = []
    images = [s for s in segments if isinstance(s, Image.Image)]
    for segment in segments:
        ids += _image_ids(model, segment) if isinstance(segment, Image.Image) else segment
    inputs: dict[str, Any] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids),
                                                                                               dtype=torch.long)}
    config: Any = model.hf_model.config
    if model.family == "mllama":
        from transformers.models.mllama.processing_mllama import (
            convert_sparse_cross_attention_mask_to_dense,
            get_cross_attention_token_mask,
        )

        processed = model.image_processor(images=[images], return_tensors="pt")
        token_mask = get_cross_attention_token_mask(ids, config.image_token_index)
        dense = convert_sparse_cross_attention_mask_to_dense([token_mask], processed["num_tiles"],
                                                             config.vision_config.max_num_tiles, len(ids))
        inputs.update(pixel_values=processed["pixel_values"], aspect_ratio_ids=processed["aspect_ratio_ids"],
                      aspect_ratio_mask=processed["aspect_ratio_mask"], cross_attention_mask=torch.tensor(dense))
        inputs["past_key_values"] = _text_prefix_cache(model, ids)
    elif model.family == "qwen2_5_vl":
        processed = model.image_processor(images=images, return_tensors="pt")
        inputs.update(pixel_values=processed["pixel_values"], image_grid_thw=processed["image_grid_thw"])
        if _rope_index_wants_token_types(model):
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == config.image_token_id).int()
    else:
        inputs["pixel_values"] = model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    dtype = model.hf_model.dtype
    return {k: v if not isinstance(v, torch.Tensor) else
            v.to(model.device, dtype) if v.is_floating_point() else v.to(model.device) for k, v in inputs.items()}


def _text_prefix_cache(model: FamilyModel, ids: list[int]) -> Any:
    """Mllama: a cache holding the text before the first `<|image|>`, prefilled without images."""
    image = model.hf_model.config.image_token_index
    prefix = ids[:ids.index(image)] if image in ids else ids
    cache = new_dynamic_cache(model.hf_model.config)
    with torch.inference_mode():
        model.hf_model(input_ids=torch.tensor([prefix], device=model.device), past_key_values=cache, use_cache=True)
    return cache


def _rope_index_wants_token_types(model: FamilyModel) -> bool:
    """transformers 5 finds Qwen2.5-VL image tokens through `mm_token_type_ids`; 4.x through the input ids."""
    rope_index = getattr(model.hf_model.model, "get_rope_index", None) or model.hf_model.get_rope_index
    return "mm_token_type_ids" in inspect.signature(rope_index).parameters
