"""The fusion zoo: every mechanism on one shared transformers backbone and one shared vision tower.

Public API::

    config = FusionConfig(mechanism="casa")            # tiny Qwen2 + SigLIP, random weights
    model = FusionModel(config)                        # or load_checkpoint(directory)
    out = model([TextSegment(ids), ImageSegment(px), TextSegment(ids2)])   # parallel: logits + loss
    session = model.new_session()                      # streaming: add_image / add_text / decode
"""

from casa_eval.fusion._config import (
    MECHANISMS,
    AttentionBackend,
    BackboneConfig,
    FusionConfig,
    MechanismName,
    VisionConfig,
)
from casa_eval.fusion.checkpoint import load_checkpoint, save_checkpoint
from casa_eval.fusion.model import MECHANISM_CLASSES, FusionModel, FusionOutput
from casa_eval.fusion.segments import ImageSegment, Segment, TextSegment, pad_left
from casa_eval.fusion.session import ZooSession
from casa_eval.fusion.tokenizer import zoo_tokenizer

__all__ = [
    "MECHANISMS",
    "MECHANISM_CLASSES",
    "AttentionBackend",
    "BackboneConfig",
    "FusionConfig",
    "FusionModel",
    "FusionOutput",
    "ImageSegment",
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
