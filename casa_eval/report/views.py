"""What the report shows, computed from results documents (no HTML here).

Every number comes from `results.json` and the run's sample files; strings from models and datasets are
passed to the template as plain data and escaped there.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casa_eval.results.schema import RESULTS_FILE, MetricResult, RunResults, load_results

if TYPE_CHECKING:
    from PIL import Image

INSERTION, CROSS_ATTENTION = "insertion", "cross_attention"
CASA_FAMILY = ("casa", "casa_shared")


@dataclass
class RunView:
    label: str
    directory: Path
    results: RunResults

    @property
    def mechanisms(self) -> dict[str, str]:
        """model name -> mechanism, from every model record of the run."""
        out = {m.name: m.mechanism for m in self.results.config.models}
        if self.results.efficiency is not None:
            out.update({m.name: m.mechanism for m in self.results.efficiency.model_records})
        return out


def load_runs(paths: list[Path]) -> list[RunView]:
    views: list[RunView] = []
    for path in paths:
        directory = (path if path.is_dir() else path.parent).resolve()  # reports/latest -> run-<id>
        results = load_results(directory / RESULTS_FILE if path.is_dir() else path)
        views.append(RunView(label=_unique_label(results.run_id, directory, views), directory=directory,
                             results=results))
    return views


def _unique_label(run_id: str, directory: Path, existing: list[RunView]) -> str:
    label = directory.name if directory.name not in ("", ".") else run_id
    taken = {v.label for v in existing}
    return label if label not in taken else f"{label} ({len(existing) + 1})"


# ---------------------------------------------------------------------------------------------- accuracy


@dataclass
class AccuracyCell:
    value: float
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    delta_vs_insertion: float | None = None


@dataclass
class AccuracyTable:
    """Models x tasks, primary metric of each task, for one run."""

    run: str
    tasks: list[str]
    metrics: dict[str, str]  # task -> primary metric
    rows: list[tuple[str, str, list[AccuracyCell | None]]]  # (model, mechanism, cells per task)
    gap_closed: list[tuple[str, str, float]] = field(default_factory=list)  # (model, task, fraction)
    insertion_model: str | None = None


def primary_metrics(results: RunResults) -> dict[str, str]:
    """The first metric each task declares (e.g. anls, relaxed_overall)."""
    declared = {t.name: t.metrics[0] for t in results.config.tasks if t.metrics}
    for r in results.accuracy:
        declared.setdefault(r.task, r.metric)
    return declared


def accuracy_table(view: RunView) -> AccuracyTable:
    results = view.results
    metrics = primary_metrics(results)
    tasks = list(dict.fromkeys(r.task for r in results.accuracy))
    by_key: dict[tuple[str, str], MetricResult] = {(r.model, r.task): r for r in results.accuracy
                                                    if metrics.get(r.task) == r.metric}
    mechanisms = view.mechanisms
    models = list(dict.fromkeys(r.model for r in results.accuracy))
    insertion = next((m for m in models if mechanisms.get(m) == INSERTION), None)
    rows = []
    for model in models:
        cells: list[AccuracyCell | None] = []
        for task in tasks:
            r = by_key.get((model, task))
            if r is None:
                cells.append(None)
                continue
            base = by_key.get((insertion, task)) if insertion else None
            cells.append(AccuracyCell(r.value, r.stderr, r.ci_low, r.ci_high, r.n,
                                      None if base is None or model == insertion else r.value - base.value))
        rows.append((model, mechanisms.get(model, "?"), cells))
    return AccuracyTable(run=view.label, tasks=tasks, metrics=metrics, rows=rows,
                         gap_closed=_gap_closed(models, mechanisms, tasks, by_key), insertion_model=insertion)


def _gap_closed(models: list[str], mechanisms: dict[str, str], tasks: list[str],
                by_key: dict[tuple[str, str], MetricResult]) -> list[tuple[str, str, float]]:
    """(CASA - CA) / (insertion - CA): how much of the gap between cross-attention and insertion CASA closes."""
    insertion = next((m for m in models if mechanisms.get(m) == INSERTION), None)
    cross = next((m for m in models if mechanisms.get(m) == CROSS_ATTENTION), None)
    out: list[tuple[str, str, float]] = []
    if insertion is None or cross is None:
        return out
    for model in models:
        if mechanisms.get(model) not in CASA_FAMILY:
            continue
        for task in tasks:
            c, i, a = by_key.get((model, task)), by_key.get((insertion, task)), by_key.get((cross, task))
            if c and i and a and abs(i.value - a.value) > 1e-12:
                out.append((model, task, (c.value - a.value) / (i.value - a.value)))
    return out


def lab_table(view: RunView) -> dict[str, Any]:
    """The lab section of one run, laid out for the template: mechanisms x lab tasks."""
    from casa_eval.data.lab.tasks import LAB_TASKS

    lab = view.results.lab
    assert lab is not None
    tasks = list(dict.fromkeys(c.task for c in lab.cells))
    cells = {(c.model, c.task): c for c in lab.cells}
    diffs = {(d.model, d.task): d for d in lab.comparisons}
    records = {m.name: m for m in view.results.config.models}
    rows = []
    for model in dict.fromkeys(c.model for c in lab.cells):
        row_cells: list[dict[str, Any] | None] = []
        mechanism = "?"
        for task in tasks:
            c = cells.get((model, task))
            if c is None:
                row_cells.append(None)
                continue
            mechanism = c.mechanism
            d = diffs.get((model, task))
            low, high = (c.seed_ci_low, c.seed_ci_high) if c.seed_ci_low is not None else (c.item_ci_low,
                                                                                          c.item_ci_high)
            row_cells.append({"accuracy": c.accuracy, "low": low, "high": high,
                              "diff": None if d is None else d.difference,
                              "diff_low": None if d is None else d.ci_low,
                              "diff_high": None if d is None else d.ci_high})
        training = (records[model].training or {}) if model in records else {}
        rows.append({"model": model, "mechanism": mechanism, "cells": row_cells,
                     "trained": f"{training['trained_parameters']:,}" if training else "—",
                     "seconds": f"{training['wall_seconds']:.0f}" if training else "—"})
    gap_tasks = [t for t in tasks if any(g.task == t and g.fraction is not None for g in lab.gap_closed)]
    by_gap = {(g.model, g.task): g for g in lab.gap_closed}
    gap_models = [m for m in dict.fromkeys(g.model for g in lab.gap_closed)
                  if any(g.fraction is not None for g in lab.gap_closed if g.model == m)
                  and (records[m].mechanism if m in records else "") != "text_only"]
    gap_rows = [(m, [by_gap.get((m, t)) for t in gap_tasks]) for m in gap_models]
    return {"run": view.label, "tasks": tasks, "rows": rows, "gap_tasks": gap_tasks, "gap_rows": gap_rows,
            "seeds": max(len(c.seeds) for c in lab.cells), "chance": lab.cells[0].chance,
            "isolates": {t: LAB_TASKS[t].isolates for t in tasks}}


# ---------------------------------------------------------------------------------------------- samples


@dataclass
class SampleRow:
    run: str
    model: str
    task: str
    doc_id: int
    question: str
    prediction: str
    target: str
    metric: str
    score: float | None
    failed: bool
    thumbnail: str | None  # key into the thumbnail table


def sample_rows(views: list[RunView], thumbnails: ThumbnailStore, limit_per_file: int = 500) -> list[SampleRow]:
    rows = []
    for view in views:
        metrics = primary_metrics(view.results)
        for key, relative in sorted(view.results.files.items()):
            if not key.startswith("samples:") or not (view.directory / relative).is_file():
                continue
            with (view.directory / relative).open() as f:
                for i, line in enumerate(f):
                    if i >= limit_per_file:
                        break
                    record = json.loads(line)
                    metric = metrics.get(record["task"], "")
                    score = record.get("scores", {}).get(metric)
                    rows.append(SampleRow(
                        run=view.label, model=record["model"], task=record["task"], doc_id=record["doc_id"],
                        question=str(record.get("question") or record.get("prompt") or ""),
                        prediction=str(record.get("prediction") or ""), target=_target_text(record.get("target")),
                        metric=metric, score=score, failed=score is None or score < 0.5,
                        thumbnail=(thumbnails.add(record.get("image_path"))
                                   or thumbnails.add_drawn(record.get("image_specs")))))
    # the same document of the same task next to each other across models and runs
    rows.sort(key=lambda r: (r.task, r.doc_id, r.model, r.run))
    return rows


def random_weight_models(views: list[RunView]) -> list[str]:
    """Zoo models evaluated with random weights (their accuracy is expected to be near zero)."""
    return sorted({m.name for v in views for m in v.results.config.models if m.weights_sha256 is None
                   and v.results.accuracy and m.source.startswith("zoo")})


def _target_text(target: Any) -> str:
    if isinstance(target, list):
        return " | ".join(str(t) for t in target)
    return "" if target is None else str(target)


class ThumbnailStore:
    """Small JPEG thumbnails as data URIs, each image stored once however many rows show it."""

    def __init__(self, size: int = 96) -> None:
        self.size = size
        self.images: dict[str, str] = {}
        self._keys: dict[str, str | None] = {}

    def add(self, path: str | None) -> str | None:
        if not path:
            return None
        if path not in self._keys:
            self._keys[path] = self._encode(Path(path))
        return self._keys[path]

    def add_drawn(self, specs: str | None) -> str | None:
        """A lab item's images (a JSON list of drawing specs), side by side, each scaled up to the thumbnail
        size with square pixels so that a glyph stays legible."""
        if not specs:
            return None
        if specs not in self._keys:
            drawn = self._draw(specs)
            self._keys[specs] = self._store(drawn, "PNG") if drawn else None  # PNG keeps the pixels crisp
        return self._keys[specs]

    def _draw(self, specs: str) -> Image.Image | None:
        from PIL import Image

        from casa_eval.data.lab.tasks import render

        try:
            drawn = [Image.fromarray(render(spec)) for spec in json.loads(specs)]
        except (ValueError, KeyError, TypeError):
            return None
        if not drawn:
            return None
        scale = max(1, self.size // max(d.height for d in drawn))
        strip = Image.new("RGB", (sum(d.width * scale + 2 for d in drawn) - 2, drawn[0].height * scale), "white")
        x = 0
        for image in drawn:
            strip.paste(image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST), (x, 0))
            x += image.width * scale + 2
        return strip

    def _encode(self, path: Path) -> str | None:
        from PIL import Image

        try:
            with Image.open(path) as original:
                image = original.convert("RGB")
        except OSError:
            return None
        image.thumbnail((self.size, self.size))
        return self._store(image, "JPEG")

    def _store(self, image: Image.Image, kind: str) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format=kind, **({"quality": 70} if kind == "JPEG" else {}))
        key = f"t{len(self.images)}"
        self.images[key] = f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()
        return key
