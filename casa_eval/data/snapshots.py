"""Offline copies of hub datasets: `casa-eval data pull` writes them, `--data-dir` reads them.

A snapshot is one (repository, config, split, revision) as parquet shards plus a manifest, in a directory
named after the dataset, so a data directory can be copied anywhere (no absolute paths inside)::

    DATA_DIR/lmms-lab-encoder--DocVQA--DocVQA--validation/
        manifest.json            repository, config, split, requested and resolved revision, rows,
                                 features, and the sha256 of every shard
        data-00000-of-00003.parquet ...

Loading verifies every shard against the manifest; a missing or altered file is an error that names the
pull command. `CASA_EVAL_HUB_MIRROR=DIR` makes `pull` read `DIR/<repository>/<config>` (a local folder in
the hub's parquet layout) instead of the hub — how the tests exercise pulling offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

DATA_DIR_ENV = "CASA_EVAL_DATA_DIR"
MIRROR_ENV = "CASA_EVAL_HUB_MIRROR"
MANIFEST = "manifest.json"
ROWS_PER_SHARD = 2000


class ImageJoin(BaseModel):
    """Images shipped as a separate config of the same repository (GQA), joined to the questions by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str
    split: str
    key: str  # column of the questions holding the image id
    image_key: str = "id"  # column of the images config holding the same id
    image_column: str = "image"


class HubDataset(BaseModel):
    """Which data a task evaluates: a hub dataset, its config, its split and its revision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str
    config: str | None = None
    split: str
    revision: str | None = None  # a commit sha pins it; None = resolved (and recorded) at pull time
    images: ImageJoin | None = None

    def image_dataset(self) -> HubDataset | None:
        if self.images is None:
            return None
        return HubDataset(repo=self.repo, config=self.images.config, split=self.images.split,
                          revision=self.revision)

    @property
    def key(self) -> str:
        return "--".join([self.repo.replace("/", "--"), self.config or "default", self.split])

    def describe(self) -> str:
        where = f"{self.repo}" + (f" ({self.config})" if self.config else "") + f", split {self.split}"
        return where + (f" @ {self.revision[:12]}" if self.revision else "")


class SnapshotError(RuntimeError):
    pass


def data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def pull_command(tasks: str) -> str:
    return f"casa-eval data pull {tasks} --to DIR"


def snapshot_dir(root: Path, dataset: HubDataset) -> Path:
    return root / dataset.key


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolved_revision(dataset: HubDataset) -> str | None:
    """The commit the hub serves for the requested revision (None for a local mirror)."""
    if os.environ.get(MIRROR_ENV):
        return dataset.revision
    from huggingface_hub import HfApi

    return str(HfApi().dataset_info(dataset.repo, revision=dataset.revision).sha)


def pull(dataset: HubDataset, root: Path) -> Path:
    """Download `dataset` (or read it from the mirror) and write its snapshot under `root`."""
    import datasets

    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        source = Path(mirror) / dataset.repo / (dataset.config or "default")
        parquet = sorted(str(p) for p in source.glob(f"{dataset.split}-*.parquet"))
        if not parquet:
            raise SnapshotError(f"the mirror has no {dataset.split} split of {dataset.repo} under {source}")
        loaded = datasets.load_dataset("parquet", data_files={dataset.split: parquet}, split=dataset.split)
    else:
        loaded = datasets.load_dataset(dataset.repo, dataset.config, split=dataset.split,
                                       revision=dataset.revision)
    revision = _resolved_revision(dataset)
    target = snapshot_dir(root, dataset)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shards = max(1, -(-len(loaded) // ROWS_PER_SHARD))
    files = {}
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.parquet"
        loaded.shard(num_shards=shards, index=i, contiguous=True).to_parquet(str(staging / name))
        files[name] = _sha256(staging / name)
    manifest = {"dataset": dataset.model_dump(), "resolved_revision": revision, "rows": len(loaded),
                "features": loaded.features.to_dict(), "files": files,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds")}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / MANIFEST).read_text())


def verify(path: Path) -> list[str]:
    """Problems with a snapshot directory (empty list: intact)."""
    if not (path / MANIFEST).is_file():
        return [f"{path} has no {MANIFEST}"]
    try:
        manifest = read_manifest(path)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path / MANIFEST} is unreadable: {exc}"]
    problems = []
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file} is missing")
        elif _sha256(file) != digest:
            problems.append(f"{file} does not match its checksum")
    return problems


def locate(dataset: HubDataset, root: Path | None = None) -> Path | None:
    """The snapshot of `dataset` in the data directory, if present (regardless of integrity)."""
    root = root or data_dir()
    if root is None:
        return None
    path = snapshot_dir(root, dataset)
    return path if (path / MANIFEST).is_file() else None


def load(dataset: HubDataset, root: Path | None = None) -> Any:
    """The dataset from its verified snapshot (a `datasets.Dataset` with its original features)."""
    import datasets

    path = locate(dataset, root)
    if path is None:
        raise SnapshotError(f"{dataset.describe()} is not in the data directory")
    problems = verify(path)
    if problems:
        raise SnapshotError(f"snapshot {path} is damaged: {problems[0]}")
    manifest = read_manifest(path)
    if dataset.revision and manifest.get("resolved_revision") not in (None, dataset.revision):
        raise SnapshotError(f"snapshot {path} holds revision {manifest['resolved_revision']}, the task pins "
                            f"{dataset.revision}")
    shards = [str(path / name) for name in sorted(manifest["files"])]
    loaded = datasets.Dataset.from_parquet(shards)
    return loaded.cast(datasets.Features.from_dict(manifest["features"]))
