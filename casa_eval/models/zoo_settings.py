"""The FusionConfig of a zoo model from a run's settings — light (pydantic only), so `casa-eval run` can reject
bad zoo dimensions before torch is imported."""

from __future__ import annotations

from typing import Any

from casa_eval.config import validate_data
from casa_eval.fusion._config import FusionConfig
from casa_eval.registry import ModelEntry


def zoo_config(entry: ModelEntry, zoo: dict[str, Any] | None = None, **overrides: Any) -> FusionConfig:
    """The FusionConfig of a zoo model: `zoo` sets the shared dimensions (from a run config or a profile)."""
    data = dict(zoo or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["mechanism"] = entry.mechanism
    return validate_data(FusionConfig, data, f"invalid zoo model settings for {entry.name}")
