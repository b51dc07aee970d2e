"""A tiny, fast profile for tests."""

from __future__ import annotations

from typing import Any

from casa_eval.profiling.profile_config import ProfileConfig


def tiny_profile(**overrides: Any) -> ProfileConfig:
    data: dict[str, Any] = {
        "name": "tiny",
        "scenario": {"turns": 4, "repeats": 1, "warmup_turns": 1, "tokens_per_turn": 3, "visual_tokens": 16},
        "model": {"backbone": {"hidden_size": 64, "intermediate_size": 96, "num_layers": 2, "num_heads": 2,
                               "num_kv_heads": 1},
                  "vision": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2},
                  "qformer_queries": 4, "registers": 2},
        "device": "cpu",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ProfileConfig.model_validate(data)
