"""Verdicts kept on this machine: one JSON file per (weights digest, machine fingerprint), the latest verdict.

`casa-eval verify` writes them; loading a real checkpoint reads the one for its weights on this machine, so
`run` and `profile` can say when a checkpoint has never passed here. The store lives under
`CASA_EVAL_VERDICTS`, else `<casa-eval cache>/verdicts` (`CASA_EVAL_CACHE`, else ~/.cache/casa-eval).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from casa_eval._paths import cache_dir
from casa_eval.results.efficiency import VerificationRecord
from casa_eval.results.record import ResultRecord

STORE_ENV = "CASA_EVAL_VERDICTS"


class CheckRecord(ResultRecord):
    name: str
    value: str
    status: Literal["pass", "fail", "skip"]
    detail: str = ""


class StoredVerdict(ResultRecord):
    """One `casa-eval verify` of one checkpoint on one machine."""

    model: str
    checkpoint: str
    weights_sha256: str = Field(description="`weights_digest` of the checkpoint directory")
    machine: str = Field(description="fingerprint of the hardware and library versions (results `environment`)")
    device: str
    dtype: str
    casa_eval_version: str
    git_sha: str | None
    verdict: Literal["passed", "failed"]
    max_logit_diff: float | None
    checks: list[CheckRecord]
    verified_utc: datetime

    def summary(self) -> VerificationRecord:
        return VerificationRecord(status=self.verdict, verified_utc=self.verified_utc, dtype=self.dtype,
                                  device=self.device, casa_eval_version=self.casa_eval_version,
                                  failed_checks=[c.name for c in self.checks if c.status == "fail"])


def store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV) or cache_dir() / "verdicts")


def _path(weights: str, machine: str) -> Path:
    return store_dir() / f"{weights[:32]}-{machine}.json"


def save_verdict(verdict: StoredVerdict) -> Path:
    """Keep `verdict` as the latest one for its weights on its machine (atomic write)."""
    path = _path(verdict.weights_sha256, verdict.machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(verdict.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def find_verdict(weights: str, machine: str) -> StoredVerdict | None:
    """The latest verdict for these weights on this machine; None when there is none (or it is unreadable:
    a damaged store only means the checkpoint counts as unverified)."""
    path = _path(weights, machine)
    try:
        data: Any = json.loads(path.read_text())
        found = StoredVerdict.model_validate(data)
    except (OSError, ValueError, ValidationError):
        return None
    return found if found.weights_sha256 == weights and found.machine == machine else None


def machine_fingerprint(device_type: str) -> str:
    """This machine, as results documents fingerprint it (hardware and library versions), for `device_type`
    ("cpu" or "cuda": the GPUs themselves are part of the fingerprint, their index is not)."""
    from casa_eval.results.provenance import environment

    return environment(device_type).fingerprint


def local_checkpoint(source: str, revision: str | None = None) -> Path | None:
    """The directory holding a checkpoint: `source` itself when it is a local directory, else its snapshot in
    the local hub cache; None when neither exists (nothing is downloaded)."""
    if (Path(source) / "config.json").is_file():
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json", revision=revision)
    except Exception:  # not a repo id: no snapshot to read
        return None
    return Path(found).parent if isinstance(found, str) else None


def checkpoint_verification(weights: str, device_type: str) -> VerificationRecord:
    """What results documents record about a real checkpoint: its latest verdict here, or `unverified`."""
    found = find_verdict(weights, machine_fingerprint(device_type))
    return found.summary() if found is not None else VerificationRecord(status="unverified")
