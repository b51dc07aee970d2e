"""The on-disk cache of synthetic sets: generated on first use, verified on every use, repaired when damaged.

Layout of one set, `<root>/<kind>-<spec hash>/`:

    images/00000.png ...   one PNG per document
    records.jsonl          one JSON object per document, in doc_id order; `image_path` is relative
    manifest.json          the spec, the generator version and the sha256 of every file above

The manifest is written last, so a set without a valid manifest is never trusted. Every call takes an exclusive
`flock` on `<root>/.<kind>-<spec hash>.lock`, so concurrent callers (lmms-eval's data-parallel ranks) generate
once and then only verify.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casa_eval._paths import cache_dir
from casa_eval.data.synthetic.generate import image_relpath, render_documents, sha256_bytes, write_atomic
from casa_eval.data.synthetic.spec import SyntheticSpec

CACHE_ENV_VAR = "CASA_EVAL_DATA_CACHE"
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
_MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class SyncReport:
    """What `sync_dataset` found and did.

    `full_rebuild` is True when every document was (re)generated, with `reason` saying why (e.g. "no
    manifest", "records.jsonl does not match the manifest"); `rendered` lists the doc ids rendered by this call
    (all of them on a full rebuild, the damaged ones on a repair, none when the set was intact).
    """

    dataset_dir: Path
    full_rebuild: bool
    rendered: tuple[int, ...]
    reason: str = ""


def default_root() -> Path:
    """`$CASA_EVAL_DATA_CACHE` if set, else `synthetic/` under casa-eval's cache (`$CASA_EVAL_CACHE`,
    default ~/.cache/casa-eval)."""
    configured = os.environ.get(CACHE_ENV_VAR, "").strip()
    return Path(configured).expanduser() if configured else cache_dir() / "synthetic"


def ensure_dataset(spec: SyntheticSpec, root: Path | None = None) -> Path:
    """The directory of `spec`'s set under `root` (default: `default_root()`), generated or repaired as needed.

    On return every file listed in the manifest exists with its recorded sha256. See `sync_dataset`.
    """
    return sync_dataset(spec, root).dataset_dir


def sync_dataset(spec: SyntheticSpec, root: Path | None = None, workers: int | None = None) -> SyncReport:
    """Generate, verify or repair `spec`'s set under `root`, holding the set's lock; report what was done.

    A missing, unreadable or mismatched manifest, or a records file whose hash differs, regenerates the whole
    set. A missing or corrupted image is re-rendered alone, from its own `(seed, doc_id)` RNG; if the new bytes
    differ from the manifest (e.g. another Pillow/FreeType version), the whole set is regenerated instead so
    that every image comes from one renderer. `workers` is passed to `render_documents`.
    """
    root = (root if root is not None else default_root()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    dataset_dir = root / spec.dataset_name
    with _locked(root / f".{spec.dataset_name}.lock"):
        (dataset_dir / "images").mkdir(parents=True, exist_ok=True)
        files, problem = _read_manifest(spec, dataset_dir)
        if files is None:
            return _rebuild(spec, dataset_dir, workers, problem)
        if _file_sha256(dataset_dir / RECORDS) != files[RECORDS]:
            return _rebuild(spec, dataset_dir, workers, f"{RECORDS} does not match the manifest")
        damaged = [
            i for i in range(spec.num_docs) if _file_sha256(dataset_dir / image_relpath(i)) != files[image_relpath(i)]
        ]
        if not damaged:
            return SyncReport(dataset_dir, full_rebuild=False, rendered=())
        redone = render_documents(spec, dataset_dir, damaged, workers)
        if any(redone[i].sha256 != files[image_relpath(i)] for i in damaged):
            return _rebuild(
                spec, dataset_dir, workers, "re-rendered images differ from the manifest (renderer changed)"
            )
        return SyncReport(dataset_dir, full_rebuild=False, rendered=tuple(damaged), reason="damaged images")


def load_records(dataset_dir: Path) -> list[dict[str, Any]]:
    """The records of a set in doc_id order, as written (with `image_path` relative to `dataset_dir`)."""
    with (dataset_dir / RECORDS).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    # The lock file is never deleted: removing it would let a waiter and a newcomer lock different inodes.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _file_sha256(path: Path) -> str | None:
    try:
        return sha256_bytes(path.read_bytes())
    except FileNotFoundError:
        return None


def _expected_files(spec: SyntheticSpec) -> set[str]:
    return {RECORDS, *(image_relpath(i) for i in range(spec.num_docs))}


def _read_manifest(spec: SyntheticSpec, dataset_dir: Path) -> tuple[dict[str, str] | None, str]:
    """The manifest's file hashes if it is readable and describes exactly `spec`, else None and why not."""
    try:
        manifest = json.loads((dataset_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "manifest unreadable"
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return None, "manifest has an unknown format"
    if (
        manifest.get("spec") != spec.model_dump(mode="json")
        or manifest.get("generator_version") != spec.generator_version
    ):
        return None, "manifest describes another spec"
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != _expected_files(spec):
        return None, "manifest lists other files"
    return files, ""


def _rebuild(spec: SyntheticSpec, dataset_dir: Path, workers: int | None, reason: str) -> SyncReport:
    # Drop the manifest first: if this process dies half-way, the next caller must not trust the leftovers.
    (dataset_dir / MANIFEST).unlink(missing_ok=True)
    for stale in dataset_dir.rglob(".*.tmp"):  # temp files of writers that died before their os.replace
        stale.unlink(missing_ok=True)
    doc_ids = list(range(spec.num_docs))
    rendered = render_documents(spec, dataset_dir, doc_ids, workers)
    lines = "".join(json.dumps(rendered[i].record, sort_keys=True, ensure_ascii=False) + "\n" for i in doc_ids)
    records = lines.encode("utf-8")
    write_atomic(dataset_dir / RECORDS, records)
    files = {RECORDS: sha256_bytes(records), **{image_relpath(i): rendered[i].sha256 for i in doc_ids}}
    manifest = {
        "format": _MANIFEST_FORMAT,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.content_hash,
        "generator_version": spec.generator_version,
        "files": dict(sorted(files.items())),
    }
    write_atomic(dataset_dir / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return SyncReport(dataset_dir, full_rebuild=True, rendered=tuple(doc_ids), reason=reason)
