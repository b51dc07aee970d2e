"""Backbone families and transformers' own machinery keep working around the fusion sublayers."""

from __future__ import annotations

import pytest
import torch

from casa_eval.fusion import FusionConfig, FusionModel, ImageSegment
from casa_eval.fusion.layers import StreamChunk
from casa_eval.streaming import GenerationConfig, generate
from tests.fusion.helpers import conversation, stream_logits

LLAMA = {"family": "llama", "hidden_size": 96, "intermediate_size": 192, "num_layers": 3, "num_heads": 6,
         "num_kv_heads": 3, "rope_theta": 10_000.0}


@pytest.mark.parametrize("mechanism", ["insertion", "gated_cross_attention", "casa", "casa_shared"])
def test_llama_backbone_streams_like_it_runs_in_parallel(mechanism: str) -> None:
    model = FusionModel(FusionConfig.model_validate({"mechanism": mechanism, "backbone": LLAMA}))
    assert type(model.backbone).__name__ == "LlamaForCausalLM"
    segments = conversation(turns=3, text=6, before=3)
    with torch.no_grad():
        parallel = model(segments).logits
    assert (stream_logits(model, segments) - parallel).abs().max().item() <= 1e-4


@pytest.mark.parametrize("mechanism", ["text_only", "cross_attention", "casa"])
def test_transformers_generate_runs_on_the_wrapped_backbone(mechanism: str) -> None:
    """`backbone.generate()` with the session's cache and side state gives our greedy tokens."""
    model = FusionModel(FusionConfig(mechanism=mechanism))
    prompt = torch.tensor([[15496, 995, 11, 314]])
    image = torch.rand(1, 3, 64, 64) * 2 - 1

    ours = model.new_session()
    ours.add_text(prompt[:, :2])
    ours.add_image(image)
    logits = ours.add_text(prompt[:, 2:])
    expected = generate(ours, logits, GenerationConfig(max_new_tokens=6)).token_ids[0]

    theirs = model.new_session()
    theirs.add_text(prompt[:, :2])
    theirs.add_image(image)
    chunk = StreamChunk(theirs.states, None, model.attention_backend())
    with torch.no_grad(), model.runtime.stream_mode(chunk):
        # transformers' convention: the whole text so far; the cached prefix is skipped by generate()
        out = model.backbone.generate(input_ids=prompt, past_key_values=theirs.cache, max_new_tokens=6,
                                      do_sample=False, pad_token_id=model.tokenizer.pad_token_id)
    assert out[0, -6:].tolist() == expected


def test_images_are_ignored_by_text_only() -> None:
    model = FusionModel(FusionConfig(mechanism="text_only"))
    with_images = conversation(turns=2, text=4, before=2)
    without = [s for s in with_images if not isinstance(s, ImageSegment)]
    with torch.no_grad():
        assert torch.equal(model(with_images).logits, model(without).logits)


@pytest.mark.parametrize("mechanism", ["casa", "insertion", "text_only"])
def test_auto_backend_puts_the_backbone_on_the_kernel_family_the_fusion_resolves_to(
        mechanism: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` is resolved on the device the model runs on; when it picks flash for the fusion, the backbone's
    self-attention is switched to flash too — for every mechanism, including those that never call the
    fusion's window attention (insertion, text-only). flash-attn itself needs a GPU, so the switch is
    recorded here; the GPU check runs it for real."""
    import casa_eval.fusion.model as model_module

    model = FusionModel(FusionConfig(mechanism=mechanism, attention_backend="auto"))
    assert model.attention_backend() == "sdpa" and model.backbone_attention() == "sdpa"  # CPU
    requested: list[str] = []

    def switch(name: str) -> None:
        requested.append(name)
        model.backbone.config._attn_implementation = name

    monkeypatch.setattr(model.backbone, "set_attn_implementation", switch)
    monkeypatch.setattr(model_module, "resolve_backend", lambda backend, device, dtype: "flash")
    model.new_session()
    assert requested == ["flash_attention_2"]
    assert model.backbone_attention() == "flash_attention_2"
    monkeypatch.setattr(model_module, "resolve_backend", lambda backend, device, dtype: "sdpa")
    model.new_session()  # back on a device without flash: back to sdpa
    assert requested == ["flash_attention_2", "sdpa"]
