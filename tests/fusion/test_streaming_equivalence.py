"""Streaming (chunked prefill + single-token decode) reproduces the parallel forward for every mechanism."""

from __future__ import annotations

import pytest
import torch

from casa_eval.fusion import MECHANISMS, pad_left
from casa_eval.fusion.segments import ImageSegment
from tests.fusion.helpers import conversation, make_model, stream_logits

TOLERANCE = 1e-4


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_stream_matches_parallel_over_five_turns(mechanism: str) -> None:
    model = make_model(mechanism)
    segments = conversation(turns=5, text=10, before=6)
    with torch.no_grad():
        parallel = model(segments).logits
    streamed = stream_logits(model, segments, chunk=4)
    assert streamed.shape == parallel.shape
    assert (streamed - parallel).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("mechanism", ["insertion", "cross_attention", "casa", "register_cross_attention"])
def test_consecutive_images_share_a_window(mechanism: str) -> None:
    model = make_model(mechanism)
    segments = conversation(turns=3, text=5, before=3)
    segments.insert(2, ImageSegment(torch.rand(1, 3, 64, 64) * 2 - 1))  # IMG IMG text
    with torch.no_grad():
        parallel = model(segments).logits
    assert (stream_logits(model, segments) - parallel).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_left_padded_batch_matches_single_samples(mechanism: str) -> None:
    model = make_model(mechanism)
    g = torch.Generator().manual_seed(5)
    lengths = [(5, 7, 4), (3, 9, 6)]
    texts = [[torch.randint(0, 50_000, (n,), generator=g).tolist() for n in sample] for sample in lengths]
    images = [torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2)]
    batched = [pad_left([texts[0][0], texts[1][0]], 0), ImageSegment(images[0]),
               pad_left([texts[0][1], texts[1][1]], 0), ImageSegment(images[1]),
               pad_left([texts[0][2], texts[1][2]], 0)]
    with torch.no_grad():
        out = model(batched)
        assert out.text_mask is not None
        for k in range(2):
            single = [pad_left([texts[k][0]], 0), ImageSegment(images[0][k:k + 1]), pad_left([texts[k][1]], 0),
                      ImageSegment(images[1][k:k + 1]), pad_left([texts[k][2]], 0)]
            alone = model(single).logits
            assert (out.logits[k][out.text_mask[k]] - alone[0]).abs().max().item() <= TOLERANCE
    streamed = stream_logits(model, batched, chunk=3)
    assert (streamed - out.logits)[out.text_mask].abs().max().item() <= TOLERANCE


def test_parallel_loss_is_next_text_token_cross_entropy() -> None:
    model = make_model("cross_attention")
    segments = conversation(turns=2, text=6, before=4)
    with torch.no_grad():
        out = model(segments)
    text = torch.cat([s.ids for s in segments if not isinstance(s, ImageSegment)], 1)
    expected = torch.nn.functional.cross_entropy(out.logits[0, :-1], text[0, 1:])
    assert out.loss is not None
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert out.loss.requires_grad is False


def test_loss_backpropagates_into_fusion_parameters() -> None:
    model = make_model("casa")
    model.train()
    out = model(conversation(turns=2, text=6, before=4))
    assert out.loss is not None
    out.loss.backward()
    grads = [p.grad for sub in model.fusion_sublayers().values() for p in sub.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
