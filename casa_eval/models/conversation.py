"""How a streaming model turns (images, text) into a conversation, and how requests are batched.

A `PromptFormat` is the model's chat template split around the images: the adapter appends
`before_images`, then the images, then `after_images(text)`, then decodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from casa_eval.fusion.segments import pad_left
from casa_eval.streaming import StreamingSession


@dataclass(frozen=True)
class PromptFormat:
    """A single-turn chat template: `user_prefix` + images + text + `assistant_prefix`."""

    user_prefix: str = "<|im_start|>user\n"
    assistant_prefix: str = "<|im_end|>\n<|im_start|>assistant\n"
    turn_end: str = "<|im_end|>\n"

    def before_images(self) -> str:
        return self.user_prefix

    def after_images(self, text: str) -> str:
        return text + self.assistant_prefix


def prefill_turn(session: StreamingSession, tokenizer: Any, fmt: PromptFormat, images: Sequence[Sequence[Any]],
                 texts: Sequence[str], *, previous_tokens: Sequence[Sequence[int]] | None = None,
                 ) -> tuple[torch.Tensor, list[int]]:
    """Append one user turn per sample — [prefix, images..., text + assistant prefix] — and return the
    last-token logits [B, V] and the number of text tokens fed per sample.

    `images[i]` are sample i's images (every sample must have the same number). `previous_tokens[i]` are
    tokens to feed first (e.g. the last generated token and the end of the previous turn). A session with its
    own chat template (Kyutai's processors) provides `prefill_turn` itself and `fmt` is not used.
    """
    own = getattr(session, "prefill_turn", None)
    if own is not None:
        return own(images, texts, previous_tokens=previous_tokens)
    counts = {len(x) for x in images}
    if len(counts) != 1:
        raise ValueError("every sample of a batch must have the same number of images")
    pad = tokenizer.pad_token_id
    fed = [0] * len(texts)
    prefix = tokenizer(fmt.before_images(), add_special_tokens=False).input_ids
    carried = list(previous_tokens) if previous_tokens is not None else [[] for _ in texts]
    before = [list(p) + prefix for p in carried]
    after = [tokenizer(fmt.after_images(t), add_special_tokens=False).input_ids for t in texts]
    if any(before):
        seg = pad_left(before, pad)
        session.add_text(seg.ids, seg.mask)
    for k in range(counts.pop()):
        session.add_image([imgs[k] for imgs in images])
    seg = pad_left(after, pad)
    logits = session.add_text(seg.ids, seg.mask)
    for i in range(len(texts)):
        fed[i] = len(before[i]) + len(after[i])
    return logits, fed
