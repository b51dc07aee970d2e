"""`casa-eval report`: one self-contained HTML file for one or several runs.

plotly.js is embedded once and every image is inlined, so the file opens offline and requests nothing from
any other host. The template autoescapes and uses strict undefined variables; JSON payloads are made safe
for `<script>` blocks, so text from models and datasets always renders as text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from casa_eval.report.figures import (
    accuracy_figure,
    decision_figure,
    difficulty_figure,
    efficiency_figures,
    training_figure,
)
from casa_eval.report.published import published_scores
from casa_eval.report.views import (
    RunView,
    ThumbnailStore,
    accuracy_table,
    lab_table,
    load_runs,
    random_weight_models,
    sample_rows,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
RUN_FIELDS = [("date", "date"), ("status", "status"), ("code", "casa-eval"), ("device", "device"),
              ("hardware", "hardware"), ("versions", "versions"), ("models", "models"),
              ("verified", "checkpoints verified"), ("tasks", "tasks"), ("profile", "profile")]


def script_json(text: str) -> Markup:
    """JSON made safe inside a <script> element (no `</script>`, no HTML comment openers)."""
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _facts(view: RunView) -> dict[str, str]:
    r = view.results
    env = r.environment
    code = f"{r.code.casa_eval_version}" + (f" @ {r.code.git_sha[:10]}" if r.code.git_sha else "") + \
        (" (dirty)" if r.code.git_dirty else "")
    gpus = ", ".join(f"{g.name} ({g.memory_total_bytes / 2**30:.0f} GiB)" for g in env.gpus)
    return {
        "date": r.started_utc.strftime("%Y-%m-%d %H:%M UTC"),
        "status": r.status.state,
        "code": code,
        "device": env.device,
        "hardware": f"{env.cpu} ({env.cpu_count} cores)" + (f"; {gpus}" if gpus else ""),
        "versions": f"torch {env.torch}, transformers {env.transformers}, lmms-eval {env.lmms_eval or '—'}",
        "models": ", ".join(m.name for m in r.config.models) or "—",
        "verified": _verification(r.config.models),
        "tasks": ", ".join(t.name for t in r.config.tasks) or "—",
        "profile": r.config.profile or "—",
    }


def _verification(models: list[Any]) -> str:
    """Each real checkpoint's `casa-eval verify` verdict on the machine that ran it ("—" without any)."""
    notes = []
    for m in models:
        v = m.verification
        if v is None:
            continue
        when = f" {v.verified_utc:%Y-%m-%d}" if v.verified_utc is not None else ""
        how = f" ({v.dtype} on {v.device})" if v.dtype and v.device else ""
        failed = f": {', '.join(v.failed_checks)}" if v.failed_checks else ""
        notes.append(f"{m.name}: {v.status}{when}{how}{failed}" if v.status != "unverified" else
                     f"{m.name}: not verified on this machine (casa-eval verify)")
    return "; ".join(notes) or "—"


def build_report(runs: list[Path], out: Path) -> Path:
    """Render the report for `runs` (run directories or results.json files) into `out`."""
    from plotly.offline import get_plotlyjs

    views = load_runs(runs)
    thumbnails = ThumbnailStore()
    figures: list[tuple[str, Markup]] = []
    accuracy = accuracy_figure(views)
    if accuracy:
        figures.append(("fig-accuracy", script_json(accuracy)))
    decision = decision_figure(views)
    if decision:
        figures.append(("fig-decision", script_json(decision)))
    difficulty, training = difficulty_figure(views), training_figure(views)
    figures += [(name, script_json(j)) for name, j in (("fig-difficulty", difficulty), ("fig-training", training))
                if j is not None]
    efficiency = [(f"fig-eff-{i}", script_json(j)) for i, (_, j) in enumerate(efficiency_figures(views))]
    figures += efficiency
    samples = sample_rows(views, thumbnails)
    tasks = {r.task for v in views for r in v.results.accuracy}
    published = published_scores(tasks)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.globals["fmt"] = fmt
    html = env.get_template("report.html.j2").render(
        title=" vs ".join(v.label for v in views),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=views[0].results.code.casa_eval_version,
        plotly_js=Markup(get_plotlyjs()),
        runs=[{"label": v.label, "facts": _facts(v)} for v in views], run_fields=RUN_FIELDS,
        accuracy_tables=[accuracy_table(v) for v in views if v.results.accuracy],
        random_models=random_weight_models(views),
        published=published, published_rows=_group_published(published),
        published_source="; ".join(sorted({p.source for p in published})),
        accuracy_figure=accuracy is not None, decision_figure=decision is not None,
        lab_views=[lab_table(v) for v in views if v.results.lab is not None],
        difficulty_figure=difficulty is not None, training_figure=training is not None,
        efficiency_tables=[_efficiency_view(v) for v in views if v.results.efficiency is not None],
        efficiency_figures=efficiency, figures=figures,
        samples=samples, sample_models=sorted({s.model for s in samples}),
        sample_tasks=sorted({s.task for s in samples}),
        thumbnails_json=script_json(json.dumps(thumbnails.images)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def _group_published(scores: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, source, {task: score}) rows, in the order the reference files list them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for s in scores:
        rows.setdefault((s.model, s.source), {})[s.task] = s
    return [(model, source, by_task) for (model, source), by_task in rows.items()]


def _efficiency_view(view: RunView) -> dict[str, Any]:
    eff = view.results.efficiency
    assert eff is not None
    return {"run": view.label, "profile": eff.profile, "device": eff.device, "schedule": eff.schedule,
            "turn_loop": eff.loop, "models": eff.models, "crossovers": eff.crossovers,
            "kyutai": [m for m in eff.models if m.kyutai is not None]}
