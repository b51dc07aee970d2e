"""The shipped profiles validate, and a malformed profile fails with the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from casa_eval.errors import UserError
from casa_eval.fusion import FusionConfig
from casa_eval.profiling.profile_config import load_profile
from casa_eval.profiling.runner import zoo_dimensions
from casa_eval.registry import available_profiles

REQUIRED = {"cpu-smoke", "cpu-long", "paper-2b", "paper-3b", "qformer-sweep"}


def test_required_profiles_ship() -> None:
    assert set(available_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_profile_builds_valid_zoo_configs(name: str) -> None:
    profile = load_profile(available_profiles()[name])
    dims = zoo_dimensions(profile)
    for model in profile.models:
        config = FusionConfig.model_validate({**dims, "mechanism": model.removeprefix("zoo-").replace("-", "_")})
        if profile.scenario.visual_tokens:
            assert config.num_image_tokens == profile.scenario.visual_tokens


def test_paper_profiles_match_the_published_setup() -> None:
    two_b = load_profile(available_profiles()["paper-2b"])
    three_b = load_profile(available_profiles()["paper-3b"])
    for profile, turns in ((two_b, 256), (three_b, 512)):
        assert profile.dtype == "bfloat16" and profile.scenario.tokens_per_turn == 16
        assert profile.scenario.turns == turns
        config = FusionConfig.model_validate({**zoo_dimensions(profile), "mechanism": "casa"})
        assert config.num_image_tokens == 1024  # 896 px / 14 / 2 = 32 -> 32 x 32
    assert (two_b.model["backbone"]["hidden_size"], two_b.model["backbone"]["num_layers"]) == (2048, 28)
    assert (three_b.model["backbone"]["hidden_size"], three_b.model["backbone"]["num_layers"]) == (2048, 36)


# Kyutai's README table (kyutai-labs/casa, "Streaming Inference Speed", one H100, bf16): the insertion model
# Helium1-VL-2B after 256 and 512 turns — cached tokens, peak allocated GiB.
KYUTAI_INSERTION = {256: (266_773, 34.2), 512: (533_525, 63.2)}


def _weights_and_kv_per_token(name: str) -> tuple[int, int]:
    """bf16 weight bytes of the zoo insertion model at a profile's dimensions (counted on the meta device, no
    memory used) and its analytic KV bytes per cached token."""
    import torch

    from casa_eval.fusion import FusionModel
    from casa_eval.streaming.kv import analytic_kv_bytes

    config = FusionConfig.model_validate({**zoo_dimensions(load_profile(available_profiles()[name])),
                                          "mechanism": "insertion"})
    with torch.device("meta"):
        model = FusionModel(config)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    backbone = config.backbone
    per_token = analytic_kv_bytes(layers=backbone.num_layers, kv_heads=backbone.num_kv_heads,
                                  head_dim=backbone.extra.get("head_dim", backbone.hidden_size // backbone.num_heads),
                                  tokens=1, batch=1, dtype_bytes=2)
    return weights, per_token


def test_paper_2b_lands_on_kyutais_published_memory() -> None:
    weights, per_token = _weights_and_kv_per_token("paper-2b")
    (tokens_256, gib_256), (tokens_512, gib_512) = KYUTAI_INSERTION[256], KYUTAI_INSERTION[512]
    growth = (gib_512 - gib_256) * 2**30 / (tokens_512 - tokens_256)  # 114 KiB per token
    assert per_token == 112 * 2**10 and abs(per_token / growth - 1) < 0.03
    total_gib = (weights + per_token * tokens_256) / 2**30
    print(f"paper-2b at 256 turns: weights {weights / 2**30:.2f} GiB + KV {per_token * tokens_256 / 2**30:.2f} GiB "
          f"= {total_gib:.2f} GiB; Kyutai: {gib_256} GiB")
    assert abs(total_gib / gib_256 - 1) <= 0.10


def test_cpu_long_meets_the_brief() -> None:
    profile = load_profile(available_profiles()["cpu-long"])
    assert profile.scenario.turns >= 200 and profile.scenario.visual_tokens == 256
    assert profile.scenario.tokens_per_turn == 16


def test_qformer_sweep_covers_the_paper_values() -> None:
    profile = load_profile(available_profiles()["qformer-sweep"])
    assert profile.sweep["qformer_queries"] == [32, 64, 128, 256]


@pytest.mark.parametrize(("text", "expected"), [
    ("scenario:\n  turns: [1\n", "malformed YAML"),
    ("scenario:\n  turnz: 3\n", "scenario.turnz: Extra inputs are not permitted"),
    ("scenario:\n  turns: zero\n", "scenario.turns: Input should be a valid integer"),
    ("model:\n  mechanism: casa\n", "model: Value error, set mechanisms with `models`"),
])
def test_malformed_profile(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        load_profile(path)
