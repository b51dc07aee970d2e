"""Builders for interleaved conversations used across the fusion tests."""

from __future__ import annotations

import torch

from casa_eval.fusion import FusionConfig, FusionModel, ImageSegment, TextSegment
from casa_eval.fusion.segments import Segment

VOCAB = 50_000


def conversation(*, turns: int = 5, text: int = 10, before: int = 6, image_size: int = 64, batch: int = 1,
                 seed: int = 0) -> list[Segment]:
    """[text(before), (IMG, text(text)) x turns] with seeded random ids and pixels."""
    g = torch.Generator().manual_seed(seed)
    segments: list[Segment] = []
    if before:
        segments.append(TextSegment(torch.randint(0, VOCAB, (batch, before), generator=g)))
    for _ in range(turns):
        segments.append(ImageSegment(torch.rand(batch, 3, image_size, image_size, generator=g) * 2 - 1))
        segments.append(TextSegment(torch.randint(0, VOCAB, (batch, text), generator=g)))
    return segments


def make_model(mechanism: str, **overrides: object) -> FusionModel:
    model = FusionModel(FusionConfig.model_validate({"mechanism": mechanism, **overrides}))
    if mechanism == "gated_cross_attention":  # non-zero gates, or the test would be trivial
        for sub in model.fusion_sublayers().values():
            sub.attn_gate.data.fill_(0.8)
            sub.mlp_gate.data.fill_(-0.6)
    return model


def stream_logits(model: FusionModel, segments: list[Segment], chunk: int = 4) -> torch.Tensor:
    """Logits at every text token, streamed: chunked prefill of `chunk` tokens, then 1-token decodes."""
    session = model.new_session(batch_size=segments[0].ids.shape[0] if isinstance(segments[0], TextSegment)
                                else segments[0].pixels.shape[0])
    out = []
    for seg in segments:
        if isinstance(seg, ImageSegment):
            session.add_image(seg.pixels)
            continue
        out.append(session.add_text(seg.ids[:, :chunk], seg.mask if seg.mask is None else seg.mask[:, :chunk],
                                    all_logits=True))
        for j in range(chunk, seg.length):
            m = None if seg.mask is None else seg.mask[:, j:j + 1]
            out.append(session.add_text(seg.ids[:, j:j + 1], m, all_logits=True))
    return torch.cat(out, 1)
