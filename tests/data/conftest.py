"""Fixtures for the data tests: the two synthetic lmms-eval tasks and the nine casa-paper tasks (reading a
snapshot of the local hub mirror), each loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CASA_PAPER_TASKS

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
