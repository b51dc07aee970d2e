"""Training examples -> the zoo's parallel-mode inputs: interleaved segments plus labels on the answer.

The prompt is framed exactly as the evaluation adapter frames it (`PromptFormat.parts`), so a model is
trained on the token sequence it is later asked to continue; the loss covers the answer and the end-of-text
token that stops generation, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from casa_eval.fusion.segments import ImageSegment, Segment, pad_left
from casa_eval.fusion.vision import preprocess_images
from casa_eval.models.conversation import PromptFormat
from casa_eval.training.data import Example


@dataclass
class Batch:
    segments: list[Segment]
    labels: torch.Tensor  # [B, text tokens], -100 where there is no target
    targets: int  # supervised tokens in the batch


def collate(examples: Sequence[Example], tokenizer: Any, fmt: PromptFormat, image_size: int) -> Batch:
    n_images = len(examples[0].images)
    if any(len(e.images) != n_images for e in examples):
        raise ValueError("every example of a batch must have the same number of images")
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    parts = [[encode(p) for p in fmt.parts(e.text, n_images)] for e in examples]
    answers = [[*encode(fmt.answer_prefix + e.answer), tokenizer.eos_token_id] for e in examples]
    for sample, answer in zip(parts, answers, strict=True):
        sample[-1] = sample[-1] + answer
    segments: list[Segment] = []
    labels: list[torch.Tensor] = []
    for k in range(n_images + 1):
        pieces = [sample[k] for sample in parts]
        if any(pieces):
            text = pad_left(pieces, tokenizer.pad_token_id)
            segments.append(text)
            target = torch.full_like(text.ids, -100)
            if k == n_images:
                for i, answer in enumerate(answers):
                    target[i, text.length - len(answer):] = torch.tensor(answer)
            labels.append(target)
        if k < n_images:
            segments.append(ImageSegment(preprocess_images([e.images[k] for e in examples], image_size)))
    all_labels = torch.cat(labels, 1)
    return Batch(segments, all_labels, int((all_labels[:, 1:] != -100).sum()))


def shard(examples: Sequence[Example], rank: int, world: int) -> list[Example]:
    """This process's contiguous share of a global batch (data parallel)."""
    per = -(-len(examples) // world)
    return list(examples[rank * per:(rank + 1) * per])


