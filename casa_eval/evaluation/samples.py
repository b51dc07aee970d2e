"""From lmms-eval's per-sample dicts to casa-eval's sample records and metric results."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from casa_eval.data.lab.tasks import LAB_TASKS
from casa_eval.results.schema import MetricResult, TaskRecord
from casa_eval.results.stats import mean_with_uncertainty

_SKIP_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "token_counts", "doc_hash",
              "prompt_hash", "target_hash", "input_media", "input", "task_name"}


def metric_names(config: dict[str, Any]) -> dict[str, bool]:
    """{metric: higher_is_better} declared by a resolved task config."""
    return {str(m["metric"]): bool(m.get("higher_is_better", True)) for m in config.get("metric_list", [])}


def sample_records(model: str, task: str, samples: list[dict[str, Any]], metrics: dict[str, bool],
                   ) -> list[dict[str, Any]]:
    """One JSON-able record per evaluated document: prompt, prediction, target, per-metric scores."""
    records = []
    for s in sorted(samples, key=lambda x: x["doc_id"]):
        doc = s.get("doc") or {}
        args = s.get("arguments") or []
        prediction = _first(s.get("filtered_resps")) if s.get("filtered_resps") else _first(s.get("resps"))
        counts = (s.get("token_counts") or [{}])[0] or {}
        records.append({
            "model": model, "task": task, "doc_id": s["doc_id"],
            "question": doc.get("question"),
            "prompt": args[0] if args and isinstance(args[0], str) else None,
            "prediction": prediction if isinstance(prediction, str) else json.dumps(prediction, default=str),
            "target": s.get("target"),
            "scores": {k: _score(s[k]) for k in metrics if k in s and _score(s[k]) is not None},
            "input_tokens": counts.get("input_tokens"), "output_tokens": counts.get("output_tokens"),
            "image_path": doc.get("image_path"),
            # lab items draw their images from a spec instead of reading a file (casa_eval.data.lab)
            "image_specs": doc.get("images") if doc.get("task") in LAB_TASKS else None,
        })
    return records


def metric_results(model: str, task: str, records: list[dict[str, Any]], metrics: dict[str, bool],
                   lmms_results: dict[str, Any]) -> list[MetricResult]:
    out = []
    for metric, higher in metrics.items():
        values = [r["scores"][metric] for r in records if metric in r["scores"]]
        theirs = lmms_results.get(f"{metric},none")
        if not values and isinstance(theirs, (int, float)) and records:
            # a metric whose per-document items are not scores (MME's total sums accuracy and accuracy+ over
            # categories of image pairs): lmms-eval's aggregate is the value, with no per-item interval
            out.append(MetricResult(model=model, task=task, metric=metric, value=float(theirs), stderr=None,
                                    ci_low=None, ci_high=None, n=len(records), higher_is_better=higher,
                                    lmms_eval_value=float(theirs)))
            continue
        if not values:
            continue
        mean, stderr, low, high = mean_with_uncertainty(values)
        out.append(MetricResult(model=model, task=task, metric=metric, value=mean, stderr=stderr, ci_low=low,
                                ci_high=high, n=len(values), higher_is_better=higher,
                                lmms_eval_value=float(theirs) if isinstance(theirs, (int, float)) else None))
    return out


def task_record(task: str, config: dict[str, Any], samples: list[dict[str, Any]], num_docs: int | None,
                ) -> TaskRecord:
    """What was evaluated: data source, a hash of the evaluated documents (no media), prompts, metrics."""
    metadata = config.get("metadata") or {}
    if isinstance(metadata, list):
        metadata = {k: v for item in metadata if isinstance(item, dict) for k, v in item.items()}
    docs = [s.get("doc") or {} for s in sorted(samples, key=lambda x: x["doc_id"])]
    digest = hashlib.sha256(json.dumps(docs, sort_keys=True, default=str).encode()).hexdigest()
    source = str(config.get("dataset_path", ""))
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files:
        source += f" {json.dumps(files, default=str)}"
    if config.get("dataset_name"):
        source += f" ({config['dataset_name']})"
    version = metadata.get("version")
    return TaskRecord(name=task, prompt_profile=str(metadata.get("prompt_profile", "lmms-default")),
                      data_source=source, data_sha256=digest, num_docs=num_docs,
                      generation_kwargs=dict(config.get("generation_kwargs") or {}),
                      metrics=list(metric_names(config)), version=None if version is None else str(version))


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for record in records:
            f.write(json.dumps(record, default=str) + "\n")
    os.replace(tmp, path)


def _first(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _score(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None
