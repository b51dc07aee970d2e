"""The shared language-model backbone: any transformers decoder-only causal LM built from a config.

The zoo never edits a backbone layer. Fusion sublayers are attached by replacing entries of the decoder's
layer list with `FusedDecoderLayer(sublayer, original_layer)` (see `layers.py`), which keeps transformers'
mask creation, RoPE, caches and `generate()` intact.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from casa_eval.fusion._config import BackboneConfig

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# transformers' names for the backbone attention implementation, by casa-eval attention backend.
_HF_ATTENTION = {"sdpa": "sdpa", "dense": "sdpa", "flex": "flex_attention", "flash": "flash_attention_2"}


def hf_attention_implementation(backend: str) -> str:
    """The backbone's `attn_implementation` matching a fusion attention backend (already resolved)."""
    return _HF_ATTENTION[backend]


def transformers_config(spec: BackboneConfig, *, pad_token_id: int, eos_token_id: int) -> PretrainedConfig:
    kwargs: dict[str, Any] = dict(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        vocab_size=spec.vocab_size,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=spec.rope_theta,
        rms_norm_eps=spec.rms_norm_eps,
        tie_word_embeddings=spec.tie_word_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
    )
    kwargs.update(spec.extra)
    return AutoConfig.for_model(spec.family, **kwargs)


def build_backbone(spec: BackboneConfig, *, pad_token_id: int, eos_token_id: int, attn_implementation: str,
                   ) -> PreTrainedModel:
    """A randomly initialised causal LM (float32; the caller casts)."""
    config = transformers_config(spec, pad_token_id=pad_token_id, eos_token_id=eos_token_id)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return cast(PreTrainedModel, model)


def decoder(backbone: PreTrainedModel) -> nn.Module:
    """The decoder stack (`model.model` for Llama/Qwen2-style LMs)."""
    inner = getattr(backbone, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise TypeError(f"{type(backbone).__name__} has no `.model.layers`: not a supported decoder-only LM")
    return cast(nn.Module, inner)


def decoder_layers(backbone: PreTrainedModel) -> nn.ModuleList:
    return cast(nn.ModuleList, decoder(backbone).layers)


def self_attention(layer: nn.Module) -> nn.Module:
    """The self-attention block of an (unwrapped) decoder layer, with q/k/v/o projections."""
    attn = getattr(layer, "self_attn", None)
    if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
        raise TypeError(f"{type(layer).__name__} has no self_attn with q/k/v/o projections")
    return cast(nn.Module, attn)


def rotary_embedding(backbone: PreTrainedModel, reference: torch.Tensor, positions: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the backbone's own RoPE at `positions` [B, L], in `reference`'s dtype."""
    rotary = cast(nn.Module, decoder(backbone).rotary_emb)
    cos, sin = rotary(reference, positions)
    return cos, sin
