"""An interleaved conversation as a list of segments, batched.

Every sample of a batch has the same segment structure (text, image, text, ...); text segments of
different lengths are left-padded (`mask` False) to a common length within the segment, and every image
has the same size, so windows line up across the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextSegment:
    ids: torch.Tensor  # [B, L] long
    mask: torch.Tensor | None = None  # [B, L] bool, False = left padding; None = no padding

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


@dataclass(frozen=True)
class ImageSegment:
    pixels: torch.Tensor  # [B, 3, S, S], prepared by `preprocess_images`


Segment = TextSegment | ImageSegment


def batch_size_of(segments: Sequence[Segment]) -> int:
    sizes = {(s.ids if isinstance(s, TextSegment) else s.pixels).shape[0] for s in segments}
    if len(sizes) != 1:
        raise ValueError(f"segments disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def pad_left(sequences: Sequence[Sequence[int]], pad_id: int) -> TextSegment:
    """Token id lists of different lengths -> one left-padded `TextSegment` (mask None if none padded)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq):] = True
    return TextSegment(ids, None if bool(mask.all()) else mask)
