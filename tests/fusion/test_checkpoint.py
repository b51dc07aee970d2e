"""Checkpoints: a directory with config, safetensors and tokenizer; reloading gives the same logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from casa_eval.fusion import FusionConfig, FusionModel, load_checkpoint, save_checkpoint
from tests.fusion.helpers import conversation, make_model


@pytest.mark.parametrize("mechanism", ["casa_shared", "qformer", "register_cross_attention"])
def test_reloaded_checkpoint_gives_identical_logits(mechanism: str, tmp_path: Path) -> None:
    model = make_model(mechanism)
    save_checkpoint(model, tmp_path / "ckpt")
    assert {"casa_eval_config.json", "model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in (tmp_path / "ckpt").iterdir()}
    reloaded = load_checkpoint(tmp_path / "ckpt")
    segments = conversation(turns=2, text=5, before=3)
    with torch.no_grad():
        assert torch.equal(model(segments).logits, reloaded(segments).logits)
    assert reloaded.tokenizer("Hello world").input_ids == model.tokenizer("Hello world").input_ids


def test_random_model_from_config_alone_is_deterministic() -> None:
    a = FusionModel(FusionConfig(mechanism="casa", seed=3))
    b = FusionModel(FusionConfig(mechanism="casa", seed=3))
    c = FusionModel(FusionConfig(mechanism="casa", seed=4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_loading_a_non_checkpoint_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a casa-eval checkpoint"):
        load_checkpoint(tmp_path)


def test_tokenizer_is_real_gpt2_bpe() -> None:
    tok = FusionModel(FusionConfig(mechanism="text_only")).tokenizer
    assert tok("Hello world").input_ids == [15496, 995]  # GPT-2's ids
    assert tok.pad_token_id != tok.eos_token_id
