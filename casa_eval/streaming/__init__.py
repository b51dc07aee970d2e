"""The streaming protocol shared by zoo models and real checkpoints (see `protocol.py`)."""

from casa_eval.streaming.generation import GenerationConfig, GenerationOutput, generate
from casa_eval.streaming.protocol import CacheStats, StreamingModel, StreamingSession

__all__ = ["CacheStats", "GenerationConfig", "GenerationOutput", "StreamingModel", "StreamingSession",
           "generate"]
