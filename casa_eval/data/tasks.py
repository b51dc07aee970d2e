"""The data hook of casa-paper tasks: each task's own data file is one row naming a pinned hub dataset
(`source.jsonl`), and `process_docs` swaps it for the dataset itself — from the data directory's snapshot
when there is one (always, offline), else from the hub at the pinned revision."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from casa_eval.data.snapshots import HubDataset, SnapshotError, data_dir, load, locate, pull_command


def read_source(path: Path) -> HubDataset:
    line = path.read_text().splitlines()[0]
    return HubDataset.model_validate(json.loads(line))


def source_from_rows(dataset: Any) -> HubDataset:
    if len(dataset) != 1:
        raise ValueError(f"a casa-paper task's data file must hold one source row, found {len(dataset)}")
    return HubDataset.model_validate(dict(dataset[0]))


def hub_docs(dataset: Any) -> Any:
    """`process_docs` for casa-paper tasks: the documents of the dataset the source row names (with the
    images of a separate images config joined in, for GQA)."""
    source = source_from_rows(dataset)
    docs = _fetch(source)
    images = source.image_dataset()
    if images is None or source.images is None:
        return docs
    join = source.images
    table = _fetch(images)
    by_id = dict(zip(table[join.image_key], range(len(table)), strict=True))
    return docs.map(lambda doc: {"image": table[by_id[doc[join.key]]][join.image_column]})


def _fetch(source: HubDataset) -> Any:
    if locate(source) is not None:
        return load(source)
    if os.environ.get("HF_DATASETS_OFFLINE") == "1":
        where = data_dir() or "(no data directory: set CASA_EVAL_DATA_DIR or --data-dir)"
        raise SnapshotError(f"{source.describe()} is not in {where}; run `{pull_command('TASK')}` where the hub "
                            "is reachable")
    import datasets

    return datasets.load_dataset(source.repo, source.config, split=source.split, revision=source.revision)


def datasets_of(source: HubDataset) -> list[HubDataset]:
    """Every hub dataset a task needs (its questions, and a separate images config if any)."""
    images = source.image_dataset()
    return [source] if images is None else [source, images]


def write_source(path: Path, dataset: HubDataset) -> None:
    path.write_text(json.dumps(dataset.model_dump(), sort_keys=True) + "\n")
