"""Fixtures for the synthetic-data tests: small specs, and the two lmms-eval tasks loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


@pytest.fixture(autouse=True)
def _no_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A test that forgets to pass `root` must still never write into the user's real cache.
    monkeypatch.setenv("CASA_EVAL_DATA_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="session")
def lmms_tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`{"synth_docvqa": task, "synth_chartqa": task}` as lmms-eval loads them offline from `tasks/`.

    Generation (600 documents of each kind) happens here, into a session temp dir, once per session.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("CASA_EVAL_DATA_CACHE", str(tmp_path_factory.mktemp("synthetic-cache")))
        # lmms-eval reads this before HF_DATASETS_CACHE: keeps the one-row spec datasets out of ~/.cache too.
        patch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        from lmms_eval.tasks import TaskManager, get_task_dict

        manager = TaskManager("ERROR", include_path=str(TASKS_DIR), include_defaults=False)
        tasks = get_task_dict(["synth_docvqa", "synth_chartqa"], manager)
    yield dict(tasks)


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
            for dataset in datasets_of(read_source(TASKS_DIR / name / "source.jsonl")):
                pull(dataset, root)
    return root


@dataclass(frozen=True)
class PaperTask:
    task: Any  # the lmms-eval task object
    docs: Any  # its documents, read from the snapshot (process_docs runs only while the data dir is set)


@pytest.fixture(scope="session")
def paper_tasks(tmp_path_factory: pytest.TempPathFactory, paper_data_dir: Path) -> dict[str, PaperTask]:
    """The nine casa-paper tasks as lmms-eval 0.7.3 loads them from `tasks/`, reading `paper_data_dir`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("CASA_EVAL_DATA_DIR", str(paper_data_dir))
        patch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))
        from lmms_eval.tasks import TaskManager, get_task_dict

        manager = TaskManager("ERROR", include_path=str(TASKS_DIR), include_defaults=False)
        tasks = get_task_dict(list(CASA_PAPER_TASKS), manager)
        return {name: PaperTask(task, task.test_docs()) for name, task in tasks.items()}
