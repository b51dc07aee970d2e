"""transformers' own inputs for a conversation, so tests can compare a streamed session with `forward`/`generate`.

A conversation is a list of segments: token id lists (text, exactly as the session was fed) and images. The
reference sequence replaces each image by the tokens the family's processor would put in the prompt.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache

from casa_eval.fusion.session import new_dynamic_cache
from casa_eval.models.families import FamilyModel
from casa_eval.models.families._compat import TRANSFORMERS_VERSION

Segment = list[int] | np.ndarray


def random_image(seed: int, height: int = 90, width: int = 120) -> np.ndarray:
    return (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)


def text_ids(model: FamilyModel, text: str) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=False).input_ids)


def image_ids(model: FamilyModel, image: np.ndarray) -> list[int]:
    """The prompt tokens that stand for one image in transformers' own input format."""
    config: Any = model.hf_model.config
    if model.family == "qwen2_5_vl":
        grid = model.image_processor(images=[Image.fromarray(image)], return_tensors="pt")["image_grid_thw"][0]
        n = int(grid.prod()) // config.vision_config.spatial_merge_size ** 2
        return [config.vision_start_token_id, *[config.image_token_id] * n, config.vision_end_token_id]
    if model.family == "mllama":
        return [config.image_token_index]
    return [config.image_token_index] * model.image_tokens_per_image  # llava, blip2


def reference_inputs(model: FamilyModel, segments: Sequence[Segment]) -> dict[str, Any]:
    """`input_ids`, `attention_mask` and the family's image inputs for the whole conversation (batch 1)."""
    ids: list[int] = []
    images = [Image.fromarray(s) for s in segments if isinstance(s, np.ndarray)]
    for segment in segments:
        ids += image_ids(model, segment) if isinstance(segment, np.ndarray) else list(segment)
    inputs: dict[str, Any] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids),
                                                                                               dtype=torch.long)}
    if not images:
        return inputs
    if model.family == "mllama":
        from transformers.models.mllama.processing_mllama import (
            convert_sparse_cross_attention_mask_to_dense,
            get_cross_attention_token_mask,
        )

        processed = model.image_processor(images=[images], return_tensors="pt")
        token_mask = get_cross_attention_token_mask(ids, model.hf_model.config.image_token_index)
        dense = convert_sparse_cross_attention_mask_to_dense([token_mask], processed["num_tiles"],
                                                             model.hf_model.config.vision_config.max_num_tiles,
                                                             len(ids))
        inputs.update(pixel_values=processed["pixel_values"], aspect_ratio_ids=processed["aspect_ratio_ids"],
                      aspect_ratio_mask=processed["aspect_ratio_mask"], cross_attention_mask=torch.tensor(dense))
    elif model.family == "qwen2_5_vl":
        processed = model.image_processor(images=images, return_tensors="pt")
        inputs.update(pixel_values=processed["pixel_values"], image_grid_thw=processed["image_grid_thw"])
        if _rope_index_wants_token_types(model):
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.hf_model.config.image_token_id).int()
    else:
        inputs["pixel_values"] = model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    return inputs


def get_rope_index(model: FamilyModel) -> Any:
    """Qwen2.5-VL's `get_rope_index` (on the inner model from transformers 4.52, on the outer one before)."""
    return getattr(model.hf_model.model, "get_rope_index", None) or model.hf_model.get_rope_index


def _rope_index_wants_token_types(model: FamilyModel) -> bool:
    """transformers 5 finds Qwen2.5-VL image tokens through `mm_token_type_ids`; 4.x through the input ids."""
    return "mm_token_type_ids" in inspect.signature(get_rope_index(model)).parameters


def text_prefix_cache(model: FamilyModel, segments: Sequence[Segment]) -> tuple[DynamicCache | None, int]:
    """For Mllama: a cache holding the text before the first image, prefilled text-only, and its length.

    transformers' full forward lets text before the first `<|image|>` attend to that image (see `mllama.py`); a
    stream cannot, so the reference prefills that text first, as the stream does. None, 0 for other families.
    """
    if model.family != "mllama":
        return None, 0
    prefix: list[int] = []
    for segment in segments:
        if isinstance(segment, np.ndarray):
            break
        prefix += list(segment)
    cache = new_dynamic_cache(model.hf_model.config)
    with torch.no_grad():
        model.hf_model(input_ids=torch.tensor([prefix]), past_key_values=cache, use_cache=True)
    return cache, len(prefix)


def reference_logits(model: FamilyModel, segments: Sequence[Segment]) -> torch.Tensor:
    """transformers' logits [L, V] at every token of the conversation after the Mllama text prefix (if any):
    one `forward` over the whole sequence for the insertion families."""
    inputs = reference_inputs(model, segments)
    cache, skip = text_prefix_cache(model, segments)
    if cache is not None:
        inputs["input_ids"] = inputs["input_ids"][:, skip:]
        inputs["cross_attention_mask"] = inputs["cross_attention_mask"][:, skip:]
        inputs["past_key_values"] = cache
    with torch.no_grad():
        logits: torch.Tensor = model.hf_model(**inputs).logits[0]
    return logits


def reference_generate(model: FamilyModel, segments: Sequence[Segment], max_new_tokens: int) -> list[int]:
    """transformers' greedy `generate` continuation (without the prompt, cut before EOS).

    Mllama on transformers 4.x: `generate` continuing from a prefilled cache drops `pixel_values` (its
    `prepare_inputs_for_generation` takes any step with a non-empty cache for a decoding step), so the image is
    never seen; there the reference is greedy decoding by transformers' full forward instead."""
    inputs = reference_inputs(model, segments)
    cache, skip = text_prefix_cache(model, segments)
    if cache is not None and TRANSFORMERS_VERSION < (5, 0):
        return _greedy_by_forward(model, inputs, cache, skip, max_new_tokens)
    if cache is not None:
        inputs["past_key_values"] = cache
    eos = model.tokenizer.eos_token_id
    out = model.hf_model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                  eos_token_id=eos, pad_token_id=model.tokenizer.pad_token_id)
    tokens = out[0].tolist()
    prompt = inputs["input_ids"][0].tolist()
    if tokens[:len(prompt)] == prompt:  # decoder-only generate returns the prompt too
        tokens = tokens[len(prompt):]
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


def _greedy_by_forward(model: FamilyModel, inputs: dict[str, Any], cache: DynamicCache, skip: int,
                       max_new_tokens: int) -> list[int]:
    """Greedy tokens from one full forward per step over the conversation after the Mllama text prefix."""
    ids, mask = inputs["input_ids"], inputs["cross_attention_mask"]
    images = {k: inputs[k] for k in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")}
    tokens: list[int] = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model.hf_model(input_ids=ids[:, skip:], cross_attention_mask=mask[:, skip:],
                                    past_key_values=copy.deepcopy(cache), use_cache=True, **images).logits
        token = int(logits[0, -1].argmax())
        if token == model.tokenizer.eos_token_id:
            break
        tokens.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], 1)
        mask = torch.cat([mask, mask[:, -1:]], 1)  # a generated token attends to the images the last one did
    return tokens
