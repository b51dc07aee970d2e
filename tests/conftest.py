"""Shared fixtures: offline Hugging Face settings; one synthetic-data cache per session; one small real run
(accuracy + streaming profile) that the report and gate tests read; a data directory with a snapshot of
every casa-paper dataset (pulled from a local stand-in for the hub); tiny checkpoints of the real families
and of Kyutai's two models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One casa-eval cache (synthetic data, demo video) for the whole session, generated on first use."""
    return tmp_path_factory.mktemp("casa-eval-cache")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, data_cache: Path) -> Path:
    """`casa-eval run` with its defaults (the shipped trained lab models on the lab tasks, the lab-stream
    profile), at a limit of 3 documents per task and 40 streaming turns instead of 160 to keep the suite fast."""
    from tests.clitools import REPO, casa_eval

    root = tmp_path_factory.mktemp("default-run")
    profile = root / "lab-stream.yaml"  # same name, so rules and figures see the default profile
    text = (REPO / "profiles" / "lab-stream.yaml").read_text()
    assert "\n  turns: 160\n" in text
    profile.write_text(text.replace("\n  turns: 160\n", "\n  turns: 40\n"))
    result = casa_eval("run", "--limit", "3", "--profile", str(profile), "-o", str(root / "run"), cache=data_cache,
                       timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


CASA_PAPER_TASKS = ("casa_ai2d", "casa_chartqa", "casa_docvqa", "casa_gqa", "casa_infovqa", "casa_mme",
                    "casa_ocrbench", "casa_realworldqa", "casa_textvqa")


@pytest.fixture(scope="session")
def hub_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few rows of every casa-paper dataset, in the hub's parquet layout (see `hub_mirror.py`)."""
    from tests.data.hub_mirror import build_mirror

    return build_mirror(tmp_path_factory.mktemp("hub-mirror"))


@pytest.fixture(scope="session")
def paper_data_dir(tmp_path_factory: pytest.TempPathFactory, hub_mirror: Path) -> Path:
    """A data directory holding a snapshot of every casa-paper dataset, pulled from the mirror."""
    from casa_eval.data.snapshots import MIRROR_ENV, pull
    from casa_eval.data.tasks import datasets_of, read_source

    root = tmp_path_factory.mktemp("paper-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, str(hub_mirror))
        for name in CASA_PAPER_TASKS:
            for dataset in datasets_of(read_source(REPO / "tasks" / name / "source.jsonl")):
                pull(dataset, root)
    return root


@pytest.fixture(scope="session")
def tiny_kyutai(tmp_path_factory: pytest.TempPathFactory, data_cache: Path) -> dict[str, Path]:
    """Tiny stand-ins for Kyutai's two checkpoints, exported with their remote-code interface: `casa` through
    the CLI (`casa-eval tiny kyutai-casa`), `insertion` through the Python API it calls."""
    from casa_eval.export.kyutai import export_zoo_mechanism
    from tests.clitools import casa_eval

    casa = tmp_path_factory.mktemp("kyutai-casa")
    result = casa_eval("tiny", "kyutai-casa", "--out", str(casa), cache=data_cache)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"--models casa={casa} --trust-remote-code" in result.stdout  # whole, at 80 columns
    insertion = export_zoo_mechanism("insertion", tmp_path_factory.mktemp("kyutai-insertion"))
    return {"casa": casa, "insertion": insertion}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """family -> directory of its tiny random checkpoint (what `casa-eval tiny FAMILY` writes), built once per
    session on first use."""
    from casa_eval.models.families import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = write_tiny_checkpoint(family, root / family, seed=0)
        return built[family]

    return get
