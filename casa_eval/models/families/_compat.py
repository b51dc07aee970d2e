"""Finding the pieces of a transformers vision-language model and its cache, whatever the transformers version.

transformers 4.52 moved the language model and vision tower of most VLMs under `model.model`; 4.56 replaced the
cache's parallel `key_cache`/`value_cache` lists by one object per layer; 5.x renamed a few arguments. Sessions
only touch models through these helpers, so the family modules read the same on every version.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import transformers
from torch import nn


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


TRANSFORMERS_VERSION = _major_minor(transformers.__version__)
# transformers 4.56 renamed `from_pretrained(torch_dtype=...)` to `dtype=` (the old name warns on 5.x).
DTYPE_KWARG = "dtype" if TRANSFORMERS_VERSION >= (4, 56) else "torch_dtype"


def find_submodule(model: nn.Module, name: str) -> nn.Module:
    """`model.model.<name>` (transformers >= 4.52 layout) or `model.<name>` (older layouts, BLIP-2)."""
    for owner in (getattr(model, "model", None), model):
        found = getattr(owner, name, None) if owner is not None else None
        if isinstance(found, nn.Module):
            return found
    raise AttributeError(f"{type(model).__name__} has no submodule {name!r}")


def language_decoder(model: nn.Module) -> nn.Module:
    """The text decoder stack (embeddings to final norm, no LM head) of a vision-language model."""
    try:
        language_model = find_submodule(model, "language_model")
    except AttributeError:  # Qwen2.5-VL on transformers < 4.52: `model.model` is the text model itself
        language_model = model.model  # type: ignore[assignment]
    inner = getattr(language_model, "model", None)
    if hasattr(language_model, "lm_head") and isinstance(inner, nn.Module):
        return inner  # a *ForCausalLM wrapper: LLaVA/Mllama on transformers < 4.52, BLIP-2's OPT on every version
    return language_model


def layer_kv(cache: Any, index: int) -> list[torch.Tensor]:
    """The (non-empty) key and value tensors one layer of a transformers cache holds."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        if index >= len(cache.layers):
            return []
        layer = cache.layers[index]
        found = [getattr(layer, "keys", None), getattr(layer, "values", None)]
    else:
        keys, values = getattr(cache, "key_cache", []), getattr(cache, "value_cache", [])
        found = [keys[index] if index < len(keys) else None, values[index] if index < len(values) else None]
    return [t for t in found if isinstance(t, torch.Tensor) and t.numel() > 0]


def layer_tokens(cache: Any, index: int) -> int:
    """Sequence length held by one layer of a transformers cache (0 when empty)."""
    tensors = layer_kv(cache, index)
    return int(tensors[0].shape[-2]) if tensors else 0


def empty_layer(cache: Any, index: int) -> None:
    """Drop what one cache layer holds; the layer's next `update` then stores only the new keys and values."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        if index < len(cache.layers) and layer_kv(cache, index):
            layer = cache.layers[index]
            layer.keys, layer.values = layer.keys[..., :0, :], layer.values[..., :0, :]
    elif index < len(getattr(cache, "key_cache", [])):  # older DynamicCache: an empty tensor marks a skipped layer
        cache.key_cache[index], cache.value_cache[index] = torch.tensor([]), torch.tensor([])


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' tqdm bars off while loading or saving: library code does not print, the CLI owns the console."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
