"""Building the model behind a name: zoo models now, real checkpoints through the same `LoadedModel`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from casa_eval.errors import UserError
from casa_eval.fusion import FusionConfig, FusionModel, load_checkpoint
from casa_eval.fusion.checkpoint import WEIGHTS_FILE, is_checkpoint
from casa_eval.models.conversation import PromptFormat
from casa_eval.registry import ModelEntry, resolve_model


@dataclass
class LoadedModel:
    """A streaming model ready to evaluate or profile, with what the results document records about it."""

    entry: ModelEntry
    model: FusionModel
    prompt_format: PromptFormat
    fingerprint: str  # changes whenever the weights or the config change (keys the resume journal)
    record: dict[str, Any] = field(default_factory=dict)
    weight_bytes: int = 0


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid --device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for CUDA but no CUDA device is available (use --device cpu)")
    return resolved


def zoo_config(entry: ModelEntry, zoo: dict[str, Any] | None = None, **overrides: Any) -> FusionConfig:
    """The FusionConfig of a zoo model: `zoo` sets the shared dimensions (from a run config or a profile)."""
    data = dict(zoo or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["mechanism"] = entry.mechanism
    try:
        return FusionConfig.model_validate(data)
    except ValueError as exc:
        raise UserError(f"invalid zoo model settings for {entry.name}: {_first_error(exc)}") from None


def load_model(name: str, *, checkpoint: str | Path | None = None, zoo: dict[str, Any] | None = None,
               seed: int | None = None, dtype: str | None = None, attention_backend: str | None = None,
               device: str | None = None) -> LoadedModel:
    entry = resolve_model(name)
    target = resolve_device(device)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not is_checkpoint(path):
            raise UserError(f"checkpoint {path} is not a casa-eval checkpoint directory (no casa_eval_config.json)")
        overrides = {k: v for k, v in {"dtype": dtype, "attention_backend": attention_backend}.items() if v}
        model = load_checkpoint(path, device=target, overrides=overrides)
        if model.config.mechanism != entry.mechanism:
            raise UserError(f"checkpoint {path} holds a {model.config.mechanism} model, not {entry.mechanism}")
        weights = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
        source = str(path.resolve())
    else:
        model = FusionModel(zoo_config(entry, zoo, seed=seed, dtype=dtype, attention_backend=attention_backend))
        model.to(target)
        weights, source = "random", "zoo (random weights)"
    config_json = model.config.model_dump_json()
    fingerprint = hashlib.sha256(f"{entry.name}|{config_json}|{weights}".encode()).hexdigest()[:16]
    record = {
        "name": entry.name,
        "mechanism": entry.mechanism,
        "source": source,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "weights_sha256": None if weights == "random" else weights,
        "dtype": model.config.dtype,
        "attention_backend": model.attention_backend(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "added_parameters": model.added_parameters(),
        "image_tokens": model.num_image_tokens,
        "kv_bytes_per_token": _kv_bytes_per_token(model),
        "cache_tokens_per_image": model.mechanism.inserted_tokens(model.num_image_tokens),
        "config": json.loads(config_json),
    }
    return LoadedModel(entry=entry, model=model, prompt_format=PromptFormat(), fingerprint=fingerprint,
                       record=record, weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()))


def _kv_bytes_per_token(model: FusionModel) -> int:
    spec = model.config.backbone
    dtype_bytes = torch.empty(0, dtype=model.dtype).element_size()
    return 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim * dtype_bytes


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)
