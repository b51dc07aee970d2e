"""How a streaming model turns (images, text) into a conversation, and how requests are batched.

A `PromptFormat` is the model's chat template split around the images: the adapter appends
`before_images`, then the images, then `after_images(text)`, then decodes. A text holding one `<image>` per
image interleaves them instead (`prefix + part0, image 1, part1, image 2, ..., partN + assistant prefix`), as
lmms-eval's multi-image tasks write it; the lab's recall task labels each image this way.
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
    answer_prefix: str = ""

    def before_images(self) -> str:
        return self.user_prefix

    def after_images(self, text: str) -> str:
        return text + self.assistant_prefix

    def parts(self, text: str, images: int) -> list[str]:
        """The `images + 1` texts around the images of one user turn (first and last carry the template)."""
        pieces = text.split(IMAGE_PLACEHOLDER)
        if images and len(pieces) == images + 1:
            middle = pieces[1:-1]
            return [self.before_images() + pieces[0], *middle, self.after_images(pieces[-1])]
        return [self.before_images(), *([""] * max(images - 1, 0)), self.after_images(text)]


IMAGE_PLACEHOLDER = "<image>"


def closing_tokens(model: Any, tokenizer: Any, fmt: PromptFormat, last_token: int, *,
                   stopped: bool = False) -> list[int]:
    """The tokens that close an answer, fed at the start of the next turn: the model's own rule when it has one
    (Kyutai's checkpoints forward a stop token), else the template's turn end after the unfed token.

    `last_token` is the one token of the answer not fed yet: the stop token decoding ended on (`stopped`), else
    the last generated token. A stop token the turn end starts with (Qwen's `<|im_end|>`) is not repeated."""
    own = getattr(model, "turn_close_tokens", None)
    if own is not None:
        return list(own(last_token))
    turn_end = list(tokenizer(fmt.turn_end, add_special_tokens=False).input_ids)
    if stopped and turn_end[:1] == [last_token]:
        return turn_end
    return [last_token, *turn_end]


def answer_closing_tokens(model: Any, tokenizer: Any, fmt: PromptFormat, output: Any, sample: int = 0) -> list[int]:
    """`closing_tokens` after `output` (a `streaming.GenerationOutput`) for one sample: its stop token when decoding
    ended on one (the answer's tokens were all fed), else its last token."""
    stop = output.stop_token_ids[sample] if output.stop_token_ids else None
    if stop is not None:
        return closing_tokens(model, tokenizer, fmt, stop, stopped=True)
    return closing_tokens(model, tokenizer, fmt, output.token_ids[sample][-1])


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
    n_images = counts.pop()
    carried = list(previous_tokens) if previous_tokens is not None else [[] for _ in texts]
    parts = [[tokenizer(p, add_special_tokens=False).input_ids for p in fmt.parts(t, n_images)] for t in texts]
    for sample, carry in zip(parts, carried, strict=True):
        sample[0] = list(carry) + sample[0]
    logits = None
    for k in range(n_images + 1):
        pieces = [sample[k] for sample in parts]
        if k == n_images or any(pieces):  # the last piece always runs: its logits start the answer
            seg = pad_left(pieces, tokenizer.pad_token_id)
            logits = session.add_text(seg.ids, seg.mask)
        if k < n_images:
            session.add_image([imgs[k] for imgs in images])
    assert logits is not None
    return logits, [sum(len(p) for p in sample) for sample in parts]
