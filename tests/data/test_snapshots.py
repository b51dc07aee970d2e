"""Offline dataset snapshots: `data pull` writes a relocatable, checksummed directory; runs read it offline;
damage and absence are one-line errors that name the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from casa_eval.data.snapshots import (
    MANIFEST,
    MIRROR_ENV,
    HubDataset,
    SnapshotError,
    load,
    locate,
    pull,
    verify,
)
from casa_eval.data.tasks import hub_docs
from tests.clitools import casa_eval

DOCVQA = HubDataset(repo="lmms-lab-encoder/DocVQA", config="DocVQA", split="validation")


def test_pull_writes_shards_with_checksums_and_the_original_features(
        tmp_path: Path, hub_mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(hub_mirror))
    path = pull(DOCVQA, tmp_path)
    assert path == tmp_path / "lmms-lab-encoder--DocVQA--DocVQA--validation"
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["rows"] == 4 and manifest["dataset"]["repo"] == DOCVQA.repo
    assert list(manifest["files"]) == ["data-00000-of-00001.parquet"]
    assert str(tmp_path) not in (path / MANIFEST).read_text()  # nothing absolute: the directory can move
    assert verify(path) == []
    loaded = load(DOCVQA, tmp_path)
    assert loaded.features["image"].__class__.__name__ == "Image"
    assert loaded[2]["answers"] == ["INV-2", "inv 2"] and loaded[2]["image"].size == (96, 96)


def test_a_moved_snapshot_loads_and_a_damaged_one_is_refused(paper_data_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(paper_data_dir, moved)
    assert load(DOCVQA, moved).num_rows == 4

    shard = next((moved / DOCVQA.key).glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    assert verify(moved / DOCVQA.key) == [f"{shard} does not match its checksum"]
    with pytest.raises(SnapshotError, match=r"is damaged: .* does not match its checksum"):
        load(DOCVQA, moved)
    shard.unlink()
    assert verify(moved / DOCVQA.key) == [f"{shard} is missing"]


def test_a_revision_mismatch_names_both_revisions(paper_data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(paper_data_dir / DOCVQA.key, copy / DOCVQA.key)
    manifest_path = copy / DOCVQA.key / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["resolved_revision"] = "a" * 40
    manifest_path.write_text(json.dumps(manifest))
    pinned = DOCVQA.model_copy(update={"revision": "b" * 40})
    with pytest.raises(SnapshotError, match=f"holds revision {'a' * 40}, the task pins {'b' * 40}"):
        load(pinned, copy)
    assert load(DOCVQA.model_copy(update={"revision": "a" * 40}), copy).num_rows == 4


def test_an_absent_dataset_offline_names_the_pull_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("CASA_EVAL_DATA_DIR", str(tmp_path))
    assert locate(DOCVQA) is None
    source_row = datasets.Dataset.from_list([DOCVQA.model_dump()])
    with pytest.raises(SnapshotError, match=r"DocVQA.*is not in .*casa-eval data pull TASK --to DIR"):
        hub_docs(source_row)


def test_cli_pull_and_verify(tmp_path: Path, hub_mirror: Path, data_cache: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(hub_mirror))
    target = tmp_path / "snap"
    pulled = casa_eval("data", "pull", "docvqa,gqa", "--to", str(target), cache=data_cache)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert "casa-eval run --data-dir" in pulled.stdout
    assert sorted(p.name for p in target.iterdir()) == [
        "lmms-lab-encoder--DocVQA--DocVQA--validation",
        "lmms-lab-encoder--GQA--testdev_balanced_images--testdev",
        "lmms-lab-encoder--GQA--testdev_balanced_instructions--testdev",
    ]
    assert casa_eval("data", "verify", str(target), cache=data_cache).returncode == 0

    shard = next((target / DOCVQA.key).glob("*.parquet"))
    shard.write_bytes(b"not parquet")
    damaged = casa_eval("data", "verify", str(target), cache=data_cache)
    assert damaged.returncode == 1 and "does not match its checksum" in damaged.stdout

    synthetic = casa_eval("data", "pull", "synth_docvqa", "--to", str(target), cache=data_cache)
    assert synthetic.returncode == 2 and "synth_docvqa: no hub dataset to pull" in synthetic.stderr
    empty = casa_eval("data", "verify", str(tmp_path / "nothing"), cache=data_cache)
    assert empty.returncode == 2 and "holds no snapshots" in empty.stderr
