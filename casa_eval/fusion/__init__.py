"""The fusion zoo: every mechanism on one shared transformers backbone and one shared vision tower.

Public API::

    config = FusionConfig(mechanism="casa")            # tiny Qwen2 + SigLIP, random weights
    model = FusionModel(config)                        # or load_checkpoint(directory)
    out = model([TextSegment(ids), ImageSegment(px), TextSegment(ids2)])   # parallel: logits + loss
    session = model.new_session()                      # streaming: add_image / add_text / decode
"""

from typing import TYPE_CHECKING, Any

from casa_eval.fusion._config import (
    MECHANISMS,
    AttentionBackend,
    BackboneConfig,
    FusionConfig,
    MechanismName,
    VisionConfig,
)

if TYPE_CHECKING:
    from casa_eval.fusion._mechanism import Mechanism
    from casa_eval.fusion.checkpoint import load_checkpoint, save_checkpoint
    from casa_eval.fusion.layers import FusionSublayer
    from casa_eval.fusion.model import MECHANISM_CLASSES, FusionModel, FusionOutput
    from casa_eval.fusion.segments import ImageSegment, Segment, TextSegment, pad_left
    from casa_eval.fusion.session import ZooSession
    from casa_eval.fusion.tokenizer import zoo_tokenizer

# The configs are plain pydantic; everything else imports torch and transformers (seconds), so it is loaded
# on first use — reading or validating a config (e.g. `casa-eval run` checking its arguments) stays fast.
_LAZY = {
    "Mechanism": "_mechanism", "FusionSublayer": "layers",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "MECHANISM_CLASSES": "model",
    "FusionModel": "model", "FusionOutput": "model", "ImageSegment": "segments", "Segment": "segments",
    "TextSegment": "segments", "pad_left": "segments", "ZooSession": "session", "zoo_tokenizer": "tokenizer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "MECHANISMS",
    "MECHANISM_CLASSES",
    "AttentionBackend",
    "BackboneConfig",
    "FusionConfig",
    "FusionModel",
    "FusionOutput",
    "FusionSublayer",
    "ImageSegment",
    "Mechanism",
    "MechanismName",
    "Segment",
    "TextSegment",
    "VisionConfig",
    "ZooSession",
    "load_checkpoint",
    "pad_left",
    "save_checkpoint",
    "zoo_tokenizer",
]
