"""Loaded models over the session's tiny checkpoints (`tiny_checkpoint`, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from casa_eval.models.families import FamilyModel, load_family_model

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def family_model(tiny_checkpoint: Callable[[str], Path]) -> Callable[..., FamilyModel]:
    """(family, cross_attention_cache="latest") -> the loaded tiny model (loaded once per session)."""
    loaded: dict[tuple[str, str], FamilyModel] = {}

    def get(family: str, cross_attention_cache: str = "latest") -> FamilyModel:
        key = (family, cross_attention_cache)
        if key not in loaded:
            loaded[key] = load_family_model(tiny_checkpoint(family), device=CPU,
                                            cross_attention_cache=cross_attention_cache)
        return loaded[key]

    return get
