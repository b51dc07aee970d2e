"""The results document: one versioned, typed JSON file per run (documented field by field in
docs/results.md). Everything the report and the regression gate read comes from it.

Versioning: `schema_version` is "MAJOR.MINOR". A reader accepts any MINOR of its MAJOR (a newer minor may
only add optional fields, which this reader ignores); a different MAJOR is refused with a clear message.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from casa_eval.config import validation_message
from casa_eval.errors import UserError
from casa_eval.results.efficiency import EfficiencySection, ModelRecord
from casa_eval.results.lab import LabSection
from casa_eval.results.record import NEWER_MINOR, ResultRecord

SCHEMA_VERSION = "1.3"  # 1.1: ModelRecord.kv_bytes_per_token, cache_tokens_per_image; 1.2: ModelRecord.training,
# RunResults.lab; 1.3: ModelRecord.verification
RESULTS_FILE = "results.json"


class CodeRevision(ResultRecord):
    casa_eval_version: str
    git_sha: str | None = Field(description="commit of the casa-eval checkout, None outside a git checkout")
    git_dirty: bool | None = Field(description="uncommitted changes in the checkout")


class GPUInfo(ResultRecord):
    index: int
    name: str
    memory_total_bytes: int
    driver_version: str | None = None
    uuid: str | None = None


class Environment(ResultRecord):
    python: str
    platform: str
    cpu: str
    cpu_count: int
    memory_total_bytes: int
    torch: str
    torch_cuda: str | None
    transformers: str
    lmms_eval: str | None
    datasets: str | None
    flash_attn: str | None
    device: str
    gpus: list[GPUInfo] = Field(default_factory=list)
    fingerprint: str = Field(description="hash of the hardware and library versions that affect speed")


class TaskRecord(ResultRecord):
    name: str
    prompt_profile: str
    data_source: str
    data_sha256: str | None
    num_docs: int | None
    generation_kwargs: dict[str, Any]
    metrics: list[str]
    version: str | None


class RunConfigRecord(ResultRecord):
    models: list[ModelRecord]
    tasks: list[TaskRecord]
    limit: int | None
    batch_size: int
    device: str
    seed: int
    seeds: dict[str, int] = Field(description="seeds lmms-eval applies before each evaluation")
    profile: str | None = None


class MetricResult(ResultRecord):
    model: str
    task: str
    metric: str
    value: float
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool
    lmms_eval_value: float | None = Field(description="lmms-eval's own aggregate, for cross-checking")


class RunStatus(ResultRecord):
    state: Literal["running", "complete", "interrupted", "failed"]
    finished: list[str] = Field(default_factory=list, description="'model|task' pairs evaluated completely")
    errors: list[str] = Field(default_factory=list)


class RunResults(ResultRecord):
    schema_version: str = SCHEMA_VERSION
    run_id: str
    started_utc: datetime
    finished_utc: datetime | None = None
    status: RunStatus
    code: CodeRevision
    environment: Environment
    config: RunConfigRecord
    accuracy: list[MetricResult] = Field(default_factory=list)
    efficiency: EfficiencySection | None = None
    lab: LabSection | None = Field(None, description="trained mechanisms compared on the lab tasks (docs/lab.md)")
    files: dict[str, str] = Field(default_factory=dict, description="run-relative paths of companion files")

    def save(self, directory: Path) -> Path:
        """Write `directory/results.json` atomically (a crash never leaves a half-written document)."""
        path = directory / RESULTS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def to_dataframe(self) -> Any:
        """A tidy pandas DataFrame: one row per measured value (accuracy metrics and efficiency summaries)."""
        import pandas as pd

        rows = [{"section": "accuracy", "model": r.model, "task": r.task, "metric": r.metric, "value": r.value,
                 "unit": "score", "stderr": r.stderr, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n}
                for r in self.accuracy]
        if self.efficiency is not None:
            profile = self.efficiency.profile
            for m in self.efficiency.models:
                base = {"section": "efficiency", "model": m.model, "task": profile, "stderr": None, "n": m.repeats}
                for window, values in (("first", m.first), ("last", m.last)):
                    for metric, value in values.items():
                        rows.append({**base, "metric": f"{metric}_{window}10pct", "value": value,
                                     "unit": _unit(metric), "ci_low": None, "ci_high": None})
                for metric, slope in m.slopes.items():
                    rows.append({**base, "metric": f"{metric}_slope", "value": slope.value, "unit": slope.unit,
                                 "ci_low": slope.ci_low, "ci_high": slope.ci_high})
                if m.peak_memory_bytes is not None:
                    rows.append({**base, "metric": "peak_memory_bytes", "value": float(m.peak_memory_bytes),
                                 "unit": "bytes", "ci_low": None, "ci_high": None})
        columns = ["section", "model", "task", "metric", "value", "unit", "stderr", "ci_low", "ci_high", "n"]
        return pd.DataFrame(rows, columns=columns)


def _unit(metric: str) -> str:
    for suffix in ("_ms_per_token", "_ms", "_bytes", "_tokens", "_j"):
        if metric.endswith(suffix):
            return suffix.lstrip("_")
    return ""


class ResultsDocumentError(UserError, ValueError):
    """A results document that cannot be read: one line naming the file, the key and the reason."""


class SchemaVersionError(ResultsDocumentError):
    pass


def load_results(path: str | Path) -> RunResults:
    """Load a results document (a run directory or its results.json), checking the schema version."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsDocumentError(f"{p}: not a readable results document ({exc})".splitlines()[0]) from None
    version = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
    ours, theirs = _version(SCHEMA_VERSION) or (0, 0), _version(version)
    if theirs is None or theirs[0] != ours[0]:
        raise SchemaVersionError(f"{p} has results schema {version or 'unknown'}; this casa-eval reads "
                                 f"{ours[0]}.x (a different major version: use the casa-eval that wrote it)")
    try:
        return RunResults.model_validate(data, context={NEWER_MINOR: theirs[1] > ours[1]})
    except ValidationError as exc:
        raise ResultsDocumentError(validation_message(str(p), exc)) from None


def _version(text: str) -> tuple[int, int] | None:
    major, _, minor = text.partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else None
