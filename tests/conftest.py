"""Shared fixtures: offline Hugging Face settings, one synthetic-data cache per session, and one small real
run (accuracy + streaming profile) that the report and gate tests read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One casa-eval cache (synthetic data, demo video) for the whole session, generated on first use."""
    return tmp_path_factory.mktemp("casa-eval-cache")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, data_cache: Path) -> Path:
    """`casa-eval run` with its defaults (every zoo mechanism, both synthetic tasks, the cpu-smoke profile on
    the demo clip), at a limit of 3 documents per task to keep the suite fast."""
    from tests.clitools import casa_eval

    out = tmp_path_factory.mktemp("default-run") / "run"
    result = casa_eval("run", "--limit", "3", "-o", str(out), cache=data_cache, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
