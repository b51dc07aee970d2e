"""Checks that fail fast, before any model is loaded: output directory, task data availability.

lmms-eval retries a failed dataset download 5 times with 2 s waits and then raises a `RetryError`
traceback; checking the data source first turns that into one actionable line.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from casa_eval.errors import UserError
from casa_eval.registry import TaskEntry, read_task_yaml

_LOCAL_BUILDERS = {"json", "parquet", "csv", "arrow", "text", "pandas", "imagefolder"}
HUB_SOURCE_FILE = "source.jsonl"  # casa-paper tasks: one row naming the pinned hub dataset


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output directory {directory} is not writable: {exc.strerror or exc}") from None


def check_video(video: Path | None) -> None:
    """A video given to stream must exist before any model loads (decoding errors come when it is read)."""
    if video is not None and not video.is_file():
        raise UserError(f"video {video} does not exist")


def check_task_data(task: TaskEntry) -> str | None:
    """Why a task's data cannot be read offline (one line), or None when it can."""
    config = read_task_yaml(task.path)
    path = str(config.get("dataset_path", ""))
    kwargs = config.get("dataset_kwargs") or {}
    if path in _LOCAL_BUILDERS:
        files = kwargs.get("data_files") or {}
        names = files.values() if isinstance(files, dict) else [files]
        for entry in names:
            for name in entry if isinstance(entry, list) else [entry]:
                file = Path(name) if Path(name).is_absolute() else task.path.parent / name
                if not file.exists():
                    return f"task {task.name}: data file {file} is missing"
                if file.name == HUB_SOURCE_FILE:
                    return _hub_source_problem(task, file)
        return None
    if not path or Path(path).exists():
        return None
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" and not _in_datasets_cache(path, config.get("dataset_name")):
        return (f"task {task.name} needs the hub dataset {path}, which is not available offline; download it on a "
                "machine with hub access and point HF_DATASETS_CACHE at the copy")
    return None


def _hub_source_problem(task: TaskEntry, source: Path) -> str | None:
    """A casa-paper task: its pinned hub dataset must be in the data directory (or the hub reachable)."""
    from casa_eval.data.snapshots import data_dir, locate, pull_command, verify
    from casa_eval.data.tasks import datasets_of, read_source

    short = task.name.removeprefix("casa_")
    for dataset in datasets_of(read_source(source)):
        found = locate(dataset)
        if found is not None:
            problems = verify(found)
            if problems:
                return f"task {task.name}: {problems[0]} (pull it again: {pull_command(short)})"
            continue
        if os.environ.get("HF_DATASETS_OFFLINE") != "1":
            continue  # online: the task reads the pinned revision from the hub
        where = f"in the data directory {data_dir()}" if data_dir() else "offline (no --data-dir)"
        return (f"task {task.name}: {dataset.describe()} is not available {where}; run `{pull_command(short)}` "
                "on a machine with hub access, then pass --data-dir DIR")
    return None


def _in_datasets_cache(path: str, name: object) -> bool:
    import datasets

    try:
        datasets.load_dataset_builder(path, name if isinstance(name, str) else None)
    except Exception:  # offline and not cached: datasets raises ConnectionError/FileNotFoundError/ValueError
        return False
    return True
