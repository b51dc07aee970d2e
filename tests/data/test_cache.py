"""The cache: deterministic, verified on every call, repaired doc by doc, rebuilt when its index is damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from casa_eval.data.synthetic.cache import MANIFEST, RECORDS, ensure_dataset, load_records, sync_dataset
from casa_eval.data.synthetic.generate import image_relpath
from casa_eval.data.synthetic.spec import SyntheticSpec

SMALL = [SyntheticSpec(kind="docvqa", seed=21, num_docs=6), SyntheticSpec(kind="chartqa", seed=21, num_docs=6)]


def _snapshot(dataset_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dataset_dir)): p.read_bytes() for p in sorted(dataset_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("spec", SMALL, ids=lambda s: s.kind)
def test_first_call_generates_and_later_calls_only_verify(spec: SyntheticSpec, tmp_path: Path) -> None:
    first = sync_dataset(spec, tmp_path)
    assert first.full_rebuild and first.rendered == tuple(range(6)) and first.reason == "no manifest"
    assert first.dataset_dir == tmp_path / f"{spec.kind}-{spec.content_hash}"
    again = sync_dataset(spec, tmp_path)
    assert not again.full_rebuild and again.rendered == ()
    records = load_records(first.dataset_dir)
    assert [r["doc_id"] for r in records] == list(range(6))
    assert all(r["image_path"] == image_relpath(r["doc_id"]) for r in records)
    manifest = json.loads((first.dataset_dir / MANIFEST).read_text())
    assert manifest["spec"] == spec.model_dump(mode="json") and manifest["generator_version"] == spec.generator_version
    assert set(manifest["files"]) == {RECORDS, *(image_relpath(i) for i in range(6))}


@pytest.mark.parametrize("spec", SMALL, ids=lambda s: s.kind)
def test_generation_is_deterministic_in_process_and_across_workers(spec: SyntheticSpec, tmp_path: Path) -> None:
    one = sync_dataset(spec, tmp_path / "a", workers=1).dataset_dir
    two = sync_dataset(spec, tmp_path / "b", workers=2).dataset_dir  # half the docs in a worker process
    assert (one / MANIFEST).read_bytes() == (two / MANIFEST).read_bytes()
    assert _snapshot(one) == _snapshot(two)


def test_corrupted_and_deleted_images_are_rebuilt_to_the_original_bytes(tmp_path: Path) -> None:
    spec = SMALL[0]
    dataset_dir = ensure_dataset(spec, tmp_path)
    original = _snapshot(dataset_dir)
    corrupted, deleted = dataset_dir / image_relpath(2), dataset_dir / image_relpath(4)
    corrupted.write_bytes(corrupted.read_bytes()[:100] + b"\x00garbage")
    deleted.unlink()
    report = sync_dataset(spec, tmp_path)
    assert not report.full_rebuild and report.rendered == (2, 4)
    assert _snapshot(dataset_dir) == original


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / RECORDS).write_text('{"doc_id": 0}\n'), "records.jsonl does not match the manifest"),
        (lambda d: (d / RECORDS).unlink(), "records.jsonl does not match the manifest"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "manifest unreadable"),
        (lambda d: (d / MANIFEST).unlink(), "no manifest"),
        (lambda d: (d / MANIFEST).write_text('{"format": 1, "spec": {}}'), "manifest describes another spec"),
    ],
    ids=["records-corrupt", "records-missing", "manifest-corrupt", "manifest-missing", "manifest-foreign"],
)
def test_a_damaged_index_triggers_a_full_rebuild(damage: Callable[[Path], object], reason: str, tmp_path: Path) -> None:
    spec = SMALL[1]
    dataset_dir = ensure_dataset(spec, tmp_path)
    original = _snapshot(dataset_dir)
    damage(dataset_dir)
    report = sync_dataset(spec, tmp_path)
    assert report.full_rebuild and report.reason == reason and report.rendered == tuple(range(spec.num_docs))
    assert _snapshot(dataset_dir) == original


def test_root_defaults_to_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASA_EVAL_DATA_CACHE", str(tmp_path / "from-env"))
    assert ensure_dataset(SMALL[0]) == tmp_path / "from-env" / SMALL[0].dataset_name


def test_concurrent_callers_generate_once(tmp_path: Path) -> None:
    spec = SyntheticSpec(kind="chartqa", seed=22, num_docs=40)
    script = (
        "import json, sys; from pathlib import Path; "
        "from casa_eval.data.synthetic import SyntheticSpec, sync_dataset; "
        "r = sync_dataset(SyntheticSpec.model_validate_json(sys.argv[1]), Path(sys.argv[2]), workers=1); "
        "sys.stdout.write(json.dumps(len(r.rendered)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, spec.canonical_json(), str(tmp_path)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    rendered = sorted(int(p.communicate(timeout=120)[0]) for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert rendered == [0, 40]  # one generated, the other waited on the lock and found a complete set
    assert sync_dataset(spec, tmp_path).rendered == ()
