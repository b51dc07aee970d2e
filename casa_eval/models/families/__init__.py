"""Real transformers vision-language checkpoints behind the streaming protocol, one module per family.

=============  ==========================================  ================================================
family         transformers class                          mechanism
=============  ==========================================  ================================================
qwen2_5_vl     Qwen2_5_VLForConditionalGeneration          token insertion, 3-D M-RoPE positions
llava          LlavaForConditionalGeneration               token insertion (CLIP patches -> Llama)
mllama         MllamaForConditionalGeneration              gated cross-attention (Llama-3.2-Vision)
blip2          Blip2ForConditionalGeneration (OPT)         Q-Former compression, then insertion
=============  ==========================================  ================================================

`load_family_model(path)` loads a local checkpoint directory (model, tokenizer, image processor);
`write_tiny_checkpoint(family, out)` writes a tiny random one with the family's real offline tokenizer, for
tests and smoke runs. Shared session plumbing lives in `base.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import cast

import torch

from casa_eval.models.families import blip2, llava, mllama, qwen2_5_vl
from casa_eval.models.families.base import FamilyModel, FamilySession

FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "llava", "mllama", "blip2")

_MODULES: dict[str, ModuleType] = {"qwen2_5_vl": qwen2_5_vl, "llava": llava, "mllama": mllama, "blip2": blip2}
# config.json `model_type` -> family
_MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl", "llava": "llava", "mllama": "mllama", "blip-2": "blip2"}


def detect_family(path: str | Path) -> str | None:
    """The family of a checkpoint from its `config.json` `model_type`: a local directory, or a Hugging Face repo
    id already in the local hub cache (nothing is downloaded). None when there is no readable config or the model
    type is not one of `FAMILIES`."""
    config = _config_file(path)
    try:
        model_type = json.loads(config.read_text()).get("model_type") if config is not None else None
    except (OSError, ValueError, AttributeError):
        return None
    return _MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None


def _config_file(path: str | Path) -> Path | None:
    local = Path(path) / "config.json"
    if local.is_file():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(path), "config.json")
    except Exception:  # not a valid repo id, or no hub client: not a checkpoint we can read
        return None
    return Path(cached) if isinstance(cached, str) else None


def load_family_model(path: str | Path, *, device: torch.device, dtype: str | None = None,
                      cross_attention_cache: str = "latest") -> FamilyModel:
    """Load a local checkpoint directory (model, tokenizer, image processor) with transformers' `from_pretrained`,
    in eval mode, on `device`; a repo id already in the local hub cache works too. `dtype` ("float32",
    "bfloat16", "float16") None keeps the checkpoint's dtype. `cross_attention_cache` ("latest", "append" or
    "replace") only applies to Mllama (see `mllama.py`).

    Raises ValueError when the directory holds no checkpoint of a known family.
    """
    family = detect_family(path)
    if family is None:
        raise ValueError(f"{path} holds no checkpoint of a known family ({', '.join(FAMILIES)}): "
                         "no config.json with a supported model_type")
    policy = mllama.check_cross_attention_cache(cross_attention_cache)
    if family == "mllama":
        return mllama.load(path, device=device, dtype=dtype, cross_attention_cache=policy)
    return cast(FamilyModel, _MODULES[family].load(path, device=device, dtype=dtype))


def write_tiny_checkpoint(family: str, out: Path, *, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` (model, real offline tokenizer, image-processor config) to
    `out` with `save_pretrained`; loadable by `load_family_model` and by transformers' own `from_pretrained`.
    Returns `out`. Raises ValueError for an unknown family."""
    if family not in _MODULES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return cast(Path, _MODULES[family].write_tiny(Path(out), seed=seed))


__all__ = ["FAMILIES", "FamilyModel", "FamilySession", "detect_family", "load_family_model",
           "write_tiny_checkpoint"]
