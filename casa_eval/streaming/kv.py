"""Measuring a transformers KV cache from its tensors, on transformers 4.x and 5.x alike."""

from __future__ import annotations

from typing import Any

import torch


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """Every key/value tensor a transformers `Cache` holds (empty layers are skipped)."""
    if cache is None:
        return []
    tensors: list[Any] = []
    if hasattr(cache, "layers"):  # transformers >= 4.56: one object per layer
        for layer in cache.layers:
            tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
    else:  # older DynamicCache: parallel lists
        tensors += list(getattr(cache, "key_cache", [])) + list(getattr(cache, "value_cache", []))
    return [t for t in tensors if isinstance(t, torch.Tensor) and t.numel() > 0]


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def cache_bytes(cache: Any) -> int:
    return tensor_bytes(cache_tensors(cache))


def cache_tokens(cache: Any) -> int:
    """Sequence length held by layer 0 of the cache (0 for an empty or missing cache)."""
    if cache is None:
        return 0
    return int(cache.get_seq_length())


def analytic_kv_bytes(*, layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int,
                      dtype_bytes: int) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes per element."""
    return 2 * layers * kv_heads * head_dim * tokens * batch * dtype_bytes
