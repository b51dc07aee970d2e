"""Mechanism semantics: CASA locality, gates at zero, CA before the first image, parameter counts."""

from __future__ import annotations

import torch

from casa_eval.fusion import MECHANISMS, FusionConfig, FusionModel, ImageSegment
from casa_eval.fusion.layers import ParallelBatch
from casa_eval.fusion.window_attention import WindowLayout
from tests.fusion.helpers import conversation, make_model


def _logits(model: FusionModel, segments: list) -> torch.Tensor:
    with torch.no_grad():
        return model(segments).logits


def _casa_sublayer_output(layer: torch.nn.Module, hidden: torch.Tensor, images: list, counts: tuple) -> torch.Tensor:
    """The CASA sublayer's contribution (output - input) for text `hidden` [1, Lt, d] in windows `counts`."""
    lt = hidden.shape[1]
    positions = torch.arange(lt)[None]
    model = make_model("casa")
    rope = model.image_rope(positions.flatten())  # [Lt, 1, D] -> reshape to a [1, Lt, D] table
    text_rope = (rope[0].view(1, lt, -1), rope[1].view(1, lt, -1))
    starts = [sum(counts[:w]) for w in range(len(counts))]
    image_rope = [None if img is None else model.image_rope(torch.tensor([starts[w]]))
                  for w, img in enumerate(images)]
    batch = ParallelBatch(layout=WindowLayout(counts), window_images=images, image_rope=image_rope,
                          text_mask=None, backend="sdpa")
    with torch.no_grad():
        return layer.forward_parallel(hidden, batch, text_rope) - hidden


def test_casa_output_ignores_earlier_windows_but_not_its_own_image() -> None:
    layer = make_model("casa").fusion_sublayers()[0]
    g = torch.Generator().manual_seed(0)
    counts = (4, 5, 6)  # text-only window, then IMG1 + 5 text, IMG2 + 6 text
    hidden = torch.randn(1, sum(counts), 128, generator=g)
    images = [None, torch.randn(1, 64, 128, generator=g), torch.randn(1, 64, 128, generator=g)]
    last = slice(9, 15)
    reference = _casa_sublayer_output(layer, hidden, images, counts)[0, last]

    other_image = [None, torch.randn(1, 64, 128, generator=g), images[2]]
    other_text = hidden.clone()
    other_text[0, :9] = torch.randn(9, 128, generator=g)  # every earlier text token
    own_image = [None, images[1], torch.randn(1, 64, 128, generator=g)]

    assert torch.equal(_casa_sublayer_output(layer, hidden, other_image, counts)[0, last], reference)
    assert torch.equal(_casa_sublayer_output(layer, other_text, images, counts)[0, last], reference)
    assert not torch.allclose(_casa_sublayer_output(layer, hidden, own_image, counts)[0, last], reference)


def test_gated_cross_attention_with_zero_gates_is_the_text_only_backbone() -> None:
    gated = FusionModel(FusionConfig(mechanism="gated_cross_attention"))  # gates initialise at zero
    text_only = FusionModel(FusionConfig(mechanism="text_only"))
    segments = conversation(turns=3, text=6, before=4)
    assert torch.equal(_logits(gated, segments), _logits(text_only, segments))
    session_g, session_t = gated.new_session(), text_only.new_session()
    for seg in segments:
        if isinstance(seg, ImageSegment):
            session_g.add_image(seg.pixels)
            session_t.add_image(seg.pixels)
        else:
            assert torch.equal(session_g.add_text(seg.ids), session_t.add_text(seg.ids))


def test_cross_attention_leaves_text_before_the_first_image_untouched() -> None:
    segments = conversation(turns=2, text=5, before=6)
    ca, text_only = make_model("cross_attention"), make_model("text_only")
    a, b = _logits(ca, segments), _logits(text_only, segments)
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_every_mechanism_shares_backbone_and_vision_weights() -> None:
    models = {m: FusionModel(FusionConfig(mechanism=m)) for m in ("insertion", "casa", "qformer")}
    ref = models["insertion"]
    for model in models.values():
        assert torch.equal(model.backbone.lm_head.weight, ref.backbone.lm_head.weight)
        assert torch.equal(model.vision.projector.fc1.weight, ref.vision.projector.fc1.weight)


def test_added_parameter_counts() -> None:
    config = FusionConfig()
    d, layers = config.backbone.hidden_size, len(config.fusion_layers or ())
    counts = {m: FusionModel(config.with_mechanism(m)).added_parameters() for m in MECHANISMS}
    assert counts["insertion"] == counts["text_only"] == 0
    assert counts["casa_shared"] == layers * d  # only the pre-norms
    spec = config.backbone
    attention = 2 * d * spec.num_heads * spec.head_dim + 2 * d * spec.num_kv_heads * spec.head_dim
    assert counts["casa"] == counts["cross_attention"] == layers * (attention + d)
    assert counts["register_cross_attention"] == counts["cross_attention"] + layers * 2 * config.registers * (
        spec.num_kv_heads * spec.head_dim)
    assert counts["gated_cross_attention"] > counts["cross_attention"]
    assert counts["qformer"] > 0
