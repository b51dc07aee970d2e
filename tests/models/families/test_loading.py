"""Tiny checkpoints: written once, loaded by `load_family_model` and by transformers' own `from_pretrained`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoImageProcessor, AutoTokenizer

from casa_eval.models.families import FAMILIES, FamilyModel, detect_family, load_family_model, write_tiny_checkpoint
from casa_eval.streaming import StreamingModel, StreamingSession

HF_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "llava": "LlavaForConditionalGeneration",
              "mllama": "MllamaForConditionalGeneration", "blip2": "Blip2ForConditionalGeneration"}
MECHANISMS = {"qwen2_5_vl": "insertion", "llava": "insertion", "mllama": "gated_cross_attention",
              "blip2": "qformer"}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_loads_here_and_in_transformers(family: str, tiny_checkpoint: Callable[[str], Path],
                                                        family_model: Callable[..., FamilyModel]) -> None:
    path = tiny_checkpoint(family)
    assert detect_family(path) == family
    model = family_model(family)
    assert isinstance(model, StreamingModel)
    assert isinstance(model.new_session(), StreamingSession)
    assert not model.hf_model.training
    assert model.mechanism == MECHANISMS[family]
    assert 1_000_000 < model.parameters < 12_000_000  # tiny, but not trivial
    assert model.dtype == "float32" and model.device == torch.device("cpu")
    json.dumps(model.config)  # JSON-able

    hf = getattr(transformers, HF_CLASSES[family]).from_pretrained(path)
    ours = model.hf_model.state_dict()
    assert all(torch.equal(t, ours[k]) for k, t in hf.state_dict().items())
    assert len(AutoTokenizer.from_pretrained(path)) == len(model.tokenizer)
    assert type(AutoImageProcessor.from_pretrained(path)) is type(model.image_processor)


@pytest.mark.parametrize("family", FAMILIES)
def test_structure_is_real(family: str, family_model: Callable[..., FamilyModel]) -> None:
    model = family_model(family)
    text = model.text_config
    assert text.num_hidden_layers >= 2
    if family == "mllama":
        assert len(text.cross_attention_layers) >= 1 and 0 not in text.cross_attention_layers
        assert model.cache_tokens_per_image == 1  # the <|image|> token
        assert model.image_tokens_per_image == 2 * (4 * 4 + 1)  # 2 tiles of 4 x 4 patches + CLS
    if family == "blip2":
        assert model.hf_model.config.qformer_config.num_hidden_layers >= 2
        assert model.image_tokens_per_image == model.cache_tokens_per_image == 8
    if family == "qwen2_5_vl":
        assert model.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655  # the real id
        assert model.tokenizer("Hello world").input_ids == [9707, 1879]  # the real Qwen2 BPE
        assert model.cache_tokens_per_image == model.image_tokens_per_image + 2
        assert model.max_batch_size == 1
    else:
        assert model.tokenizer("Hello world").input_ids[:2] == [15496, 995]  # the real GPT-2 BPE
    layers = text.num_hidden_layers - (len(text.cross_attention_layers) if family == "mllama" else 0)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    assert model.kv_bytes_per_token == 2 * layers * kv_heads * (text.hidden_size // heads) * 4
    assert 56 <= model.frame_size <= 112


def test_detect_family_rejects_other_directories(tmp_path: Path) -> None:
    assert detect_family(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert detect_family(tmp_path) is None
    (tmp_path / "config.json").write_text("not json")
    assert detect_family(tmp_path) is None
    with pytest.raises(ValueError, match="no checkpoint of a known family"):
        load_family_model(tmp_path, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown family"):
        write_tiny_checkpoint("gpt2", tmp_path / "x")


def test_bad_options_fail_loudly(tiny_checkpoint: Callable[[str], Path],
                                 family_model: Callable[..., FamilyModel]) -> None:
    with pytest.raises(ValueError, match="cross_attention_cache"):
        load_family_model(tiny_checkpoint("llava"), device=torch.device("cpu"), cross_attention_cache="keep")
    with pytest.raises(ValueError, match="dtype"):
        load_family_model(tiny_checkpoint("llava"), device=torch.device("cpu"), dtype="float8")
    with pytest.raises(ValueError, match="batch sizes"):
        family_model("qwen2_5_vl").new_session(batch_size=2)


def test_bfloat16_load_halves_the_kv_bytes(tiny_checkpoint: Callable[[str], Path],
                                           family_model: Callable[..., FamilyModel]) -> None:
    model = load_family_model(tiny_checkpoint("llava"), device=torch.device("cpu"), dtype="bfloat16")
    assert model.dtype == "bfloat16"
    assert model.kv_bytes_per_token * 2 == family_model("llava").kv_bytes_per_token


def test_detect_family_reads_the_local_hub_cache(tmp_path: Path, tiny_checkpoint: Callable[[str], Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    snapshot = tmp_path / "models--acme--tiny-llava" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((tiny_checkpoint("llava") / "config.json").read_text())
    (tmp_path / "models--acme--tiny-llava" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-llava" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert detect_family("acme/tiny-llava") == "llava"
    assert detect_family("acme/not-downloaded") is None
    assert detect_family("not a repo id!") is None
