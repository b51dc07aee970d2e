"""Saving and loading zoo models: a directory with the config, safetensors weights and the tokenizer.

Layout::

    DIR/casa_eval_config.json   the FusionConfig (validated on load)
    DIR/model.safetensors       all weights (tied and shared tensors stored once)
    DIR/tokenizer*.json, ...    the tokenizer, saved by transformers
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from casa_eval.fusion._config import FusionConfig
from casa_eval.fusion.model import FusionModel
from casa_eval.fusion.tokenizer import load_tokenizer, save_tokenizer

CONFIG_FILE = "casa_eval_config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(model: FusionModel, directory: str | Path) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(model.config.model_dump_json(indent=2) + "\n")
    save_model(model, str(out / WEIGHTS_FILE))
    save_tokenizer(model.tokenizer, out)
    return out


def is_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()


def load_checkpoint(directory: str | Path, *, device: str | torch.device | None = None,
                    overrides: Mapping[str, object] | None = None) -> FusionModel:
    """Rebuild a zoo model from `directory`. `overrides` replaces top-level config fields that do not
    change the weights' shapes (e.g. `attention_backend`, `dtype`)."""
    path = Path(directory)
    if not is_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a casa-eval checkpoint (no {CONFIG_FILE})")
    data = json.loads((path / CONFIG_FILE).read_text())
    data.update(overrides or {})
    config = FusionConfig.model_validate(data)
    model = FusionModel(config, tokenizer=load_tokenizer(path))
    load_model(model, str(path / WEIGHTS_FILE), strict=True, device=str(device or "cpu"))
    if device is not None:
        model.to(device)
    return model
