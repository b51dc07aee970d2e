"""The streaming protocol: the one interface the profiler and the lmms-eval adapter drive.

Zoo models implement it natively; adapters around real checkpoints implement it over their own caches.
A session is one conversation: images and text are appended in order, and every text call returns the
logits of its last token so a caller can decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class CacheStats:
    """What a session holds, measured from its tensors, next to the analytic expectation.

    Token counts are per sample; byte counts cover the whole batch. `side_state_tokens` is per fusion
    layer (image and window-text keys a CA/CASA layer keeps); `side_state_bytes` sums over layers.
    """

    kv_tokens: int
    kv_bytes: int
    analytic_kv_tokens: int
    analytic_kv_bytes: int
    side_state_tokens: int
    side_state_bytes: int
    analytic_side_state_bytes: int


@runtime_checkable
class StreamingSession(Protocol):
    batch_size: int

    def reset(self) -> None:
        """Forget the conversation: empty cache and side state."""

    def add_image(self, images: Sequence[Any] | torch.Tensor) -> None:
        """Append one image per sample (PIL images, HxWx3 uint8 arrays, or prepared pixels)."""

    def add_text(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *,
                 all_logits: bool = False) -> torch.Tensor:
        """Prefill [B, L] token ids (`mask` False = left padding) -> logits of the last token [B, V], or of
        every new token [B, L, V] with `all_logits`."""

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Append one token per sample [B] -> logits [B, V]."""

    def cache_stats(self) -> CacheStats: ...


@runtime_checkable
class StreamingModel(Protocol):
    """A model the adapter and the profiler can drive. Zoo models and real checkpoints implement it."""

    name: str
    tokenizer: Any

    @property
    def device(self) -> torch.device: ...

    @property
    def image_tokens_per_image(self) -> int:
        """Visual tokens one image contributes to the model's input (0 if it ignores images)."""

    @property
    def frame_size(self) -> int:
        """Side in pixels of the square frames the profiler streams to this model."""

    @property
    def max_batch_size(self) -> int | None:
        """Largest batch a session accepts (None: no limit)."""

    def new_session(self, batch_size: int = 1) -> StreamingSession: ...
