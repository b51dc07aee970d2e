"""Render documents to PNG files, in this process or spread over worker processes.

Workers are fresh interpreters running this module (`python -m casa_eval.data.synthetic.generate`), not
`multiprocessing` children: `fork` is unsafe inside an lmms-eval run (torch and tokenizer threads may hold
locks), and `spawn`/`forkserver` re-import the parent's `__main__`, which under `python -m lmms_eval` costs
~20 s per worker. PIL holds the GIL while drawing text, so threads do not help either.

Protocol: the parent writes `{"spec": ..., "dataset_dir": ..., "doc_ids": [...]}` to a worker's stdin; the
worker writes each PNG atomically into the dataset directory and answers one JSON line per document on stdout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import casa_eval
from casa_eval.data.synthetic.charts import render_chart
from casa_eval.data.synthetic.documents import render_document
from casa_eval.data.synthetic.rendering import Rendered
from casa_eval.data.synthetic.spec import SyntheticSpec

_RENDERERS: dict[str, Callable[[SyntheticSpec, int], Rendered]] = {
    "docvqa": render_document,
    "chartqa": render_chart,
}
# Below this many documents a worker's start-up (~0.6 s) costs more than it saves.
_MIN_DOCS_PER_WORKER = 48


@dataclass(frozen=True)
class RenderedFile:
    """A document written to disk: its record (with `doc_id` and relative `image_path`) and the PNG's sha256."""

    record: dict[str, Any]
    sha256: str


def image_relpath(doc_id: int) -> str:
    """Where document `doc_id`'s PNG lives inside a dataset directory: `images/00042.png`."""
    return f"images/{doc_id:05d}.png"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one.

    No fsync: a crash can still lose the newest writes, but the manifest's hashes catch that on the next call,
    and skipping it keeps generation fast on slow disks.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render_png(spec: SyntheticSpec, doc_id: int) -> tuple[bytes, dict[str, Any]]:
    """PNG bytes and record of one document; byte-identical for the same `(spec, doc_id)` and library versions."""
    rendered = _RENDERERS[spec.kind](spec, doc_id)
    buffer = io.BytesIO()
    # compress_level=1: ~2x faster than the default for ~25% larger files; the output is still deterministic.
    rendered.image.save(buffer, format="PNG", optimize=False, compress_level=1)
    record = {"doc_id": doc_id, "image_path": image_relpath(doc_id), **rendered.record}
    return buffer.getvalue(), record


def _render_into(spec: SyntheticSpec, dataset_dir: Path, doc_ids: Sequence[int]) -> dict[int, RenderedFile]:
    out = {}
    for doc_id in doc_ids:
        png, record = render_png(spec, doc_id)
        write_atomic(dataset_dir / image_relpath(doc_id), png)
        out[doc_id] = RenderedFile(record, sha256_bytes(png))
    return out


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def _run_worker(spec: SyntheticSpec, dataset_dir: Path, doc_ids: Sequence[int]) -> dict[int, RenderedFile]:
    # The worker must import the same casa_eval as this process, installed or not.
    package_root = str(Path(casa_eval.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    request = json.dumps(
        {"spec": spec.model_dump(mode="json"), "dataset_dir": str(dataset_dir), "doc_ids": list(doc_ids)}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "casa_eval.data.synthetic.generate"],
        input=request,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"render worker failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        item = json.loads(line)
        out[item["doc_id"]] = RenderedFile(item["record"], item["sha256"])
    if sorted(out) != sorted(doc_ids):
        raise RuntimeError(f"render worker returned {len(out)} of {len(doc_ids)} documents")
    return out


def render_documents(
    spec: SyntheticSpec, dataset_dir: Path, doc_ids: Sequence[int], workers: int | None = None
) -> dict[int, RenderedFile]:
    """Render `doc_ids` into `dataset_dir/images/` (which must exist) and return what was written, by doc id.

    `workers=None` uses one process per available CPU when there are enough documents to repay a worker's
    start-up; `workers=1` renders in this process only. This process always renders one share itself.
    Raises RuntimeError if a worker process fails.
    """
    if workers is None:
        workers = max(1, min(_available_cpus(), len(doc_ids) // _MIN_DOCS_PER_WORKER))
    shares = [list(doc_ids[k::workers]) for k in range(workers)]
    shares = [share for share in shares if share]
    if len(shares) <= 1:
        return _render_into(spec, dataset_dir, doc_ids)
    # Threads only wait on the worker processes; the rendering itself happens in those processes and here.
    with ThreadPoolExecutor(len(shares) - 1) as pool:
        futures = [pool.submit(_run_worker, spec, dataset_dir, share) for share in shares[1:]]
        out = _render_into(spec, dataset_dir, shares[0])
        for future in futures:
            out.update(future.result())
    return out


def _worker_main() -> None:
    request = json.loads(sys.stdin.read())
    spec = SyntheticSpec.model_validate(request["spec"])
    dataset_dir = Path(request["dataset_dir"])
    for doc_id in request["doc_ids"]:
        written = _render_into(spec, dataset_dir, [doc_id])[doc_id]
        # stdout is this worker's answer channel to the parent, not a console.
        sys.stdout.write(json.dumps({"doc_id": doc_id, "record": written.record, "sha256": written.sha256}) + "\n")


if __name__ == "__main__":
    _worker_main()
