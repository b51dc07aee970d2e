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
    assert (two_b.model["backbone"]["hidden_size"], two_b.model["backbone"]["num_layers"]) == (2560, 24)
    assert (three_b.model["backbone"]["hidden_size"], three_b.model["backbone"]["num_layers"]) == (2048, 36)


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
