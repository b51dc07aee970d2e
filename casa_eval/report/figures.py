"""Plotly figures of the report: efficiency versus turn (with spread bands, OOM points and crossovers),
accuracy with error bars, and accuracy versus memory (the decision view)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from casa_eval.report.views import RunView, primary_metrics

COLORS = {"casa": "#d62728", "casa_shared": "#ff7f0e", "insertion": "#1f77b4", "qformer": "#17becf",
          "cross_attention": "#2ca02c", "gated_cross_attention": "#9467bd", "register_cross_attention": "#8c564b",
          "text_only": "#222222"}
DASHES = ["solid", "dash", "dot", "dashdot"]
MIB = 2**20


def figure_json(fig: go.Figure) -> str:
    return pio.to_json(fig, validate=False)


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=360,
                      margin={"l": 60, "r": 20, "t": 50, "b": 45}, legend={"font": {"size": 10}})
    return fig


def memory_metric(view: RunView) -> tuple[str, str]:
    """(record field, axis label) of the memory view that belongs to each model in this run."""
    eff = view.results.efficiency
    assert eff is not None
    if any(r.gpu_peak_reserved_bytes for r in eff.records):
        return "gpu_peak_reserved_bytes", "peak reserved GPU memory (MiB)"
    if eff.schedule == "sequential":
        return "peak_rss_bytes", "peak process RSS (MiB)"
    return "state_bytes", "KV cache + side state (MiB)"


def _series(records: list[Any], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """turns, median, min, max over repeats."""
    by_turn: dict[int, list[float]] = {}
    for r in records:
        if r.oom:
            continue
        value = (r.kv_bytes or 0) + (r.side_state_bytes or 0) if field == "state_bytes" else getattr(r, field)
        if value is not None:
            by_turn.setdefault(r.turn, []).append(float(value))
    turns = np.array(sorted(by_turn))
    stats = [(np.median(by_turn[t]), min(by_turn[t]), max(by_turn[t])) for t in turns]
    arr = np.array(stats) if stats else np.zeros((0, 3))
    return turns, arr[:, 0], arr[:, 1], arr[:, 2]


EFFICIENCY_PANELS = [
    ("ttft_ms", "time to first token (ms)", 1.0),
    ("decode_ms_per_token", "decode (ms per token)", 1.0),
    ("turn_ms", "turn time (ms)", 1.0),
    ("kv_bytes", "backbone KV cache (MiB)", 1 / MIB),
    ("memory", "memory", 1 / MIB),
]


def efficiency_figures(views: list[RunView]) -> list[tuple[str, str]]:
    """[(title, figure json)] — one panel per metric, every model of every run, median line + min-max band."""
    out = []
    profiled = [v for v in views if v.results.efficiency is not None]
    for field, label, scale in EFFICIENCY_PANELS:
        fig = go.Figure()
        axis = label
        for run_index, view in enumerate(profiled):
            eff = view.results.efficiency
            assert eff is not None
            source, axis_label = (memory_metric(view) if field == "memory" else (field, label))
            axis = axis_label
            mechanisms = view.mechanisms
            for summary in eff.models:
                records = [r for r in eff.records if r.model == summary.model]
                turns, median, low, high = _series(records, source)
                if turns.size == 0:
                    continue
                name = summary.model if len(profiled) == 1 else f"{view.label} · {summary.model}"
                color = COLORS.get(mechanisms.get(summary.model, ""), "#7f7f7f")
                dash = "dash" if summary.mechanism == "text_only" else DASHES[run_index % len(DASHES)]
                group = f"{view.label}|{summary.model}"
                fig.add_trace(go.Scatter(x=turns, y=high * scale, mode="lines", line={"width": 0}, hoverinfo="skip",
                                         showlegend=False, legendgroup=group))
                fig.add_trace(go.Scatter(x=turns, y=low * scale, mode="lines", line={"width": 0}, fill="tonexty",
                                         fillcolor=_rgba(color, 0.15), hoverinfo="skip", showlegend=False,
                                         legendgroup=group))
                fig.add_trace(go.Scatter(x=turns, y=median * scale, mode="lines", name=name, legendgroup=group,
                                         line={"color": color, "dash": dash, "width": 2}))
                if summary.oom_turn is not None:
                    fig.add_trace(go.Scatter(x=[summary.oom_turn], y=[median[-1] * scale], mode="markers+text",
                                             marker={"symbol": "x", "size": 12, "color": color}, text=["OOM"],
                                             textposition="top center", showlegend=False, legendgroup=group))
            if field == "turn_ms":
                for c in eff.crossovers:
                    if c.metric == "turn_ms" and c.turn is not None and mechanisms.get(c.model) == "casa":
                        values = [r.turn_ms for r in eff.records if r.turn_ms is not None]
                        fig.add_trace(go.Scatter(  # a legend entry, so the label never stretches the axis
                            x=[c.turn, c.turn], y=[min(values), max(values)], mode="lines",
                            line={"color": "#d62728", "dash": "dot", "width": 1},
                            name=f"{c.model} cheaper than {c.baseline} from turn {c.turn}"))
        out.append((axis, figure_json(_layout(fig, axis + " per turn", "turn", axis))))
    return out


def accuracy_figure(views: list[RunView]) -> str | None:
    fig = go.Figure()
    for run_index, view in enumerate(views):
        metrics = primary_metrics(view.results)
        rows = [r for r in view.results.accuracy if metrics.get(r.task) == r.metric]
        for task in dict.fromkeys(r.task for r in rows):
            task_rows = [r for r in rows if r.task == task]
            name = f"{task} ({metrics[task]})" if len(views) == 1 else f"{view.label} · {task}"
            fig.add_trace(go.Bar(x=[r.model for r in task_rows], y=[r.value for r in task_rows], name=name,
                                 error_y={"type": "data", "array": [r.stderr or 0 for r in task_rows]},
                                 marker_pattern_shape="/" if run_index else ""))
    if not fig.data:
        return None
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05])
    return figure_json(_layout(fig, "accuracy (primary metric, ± standard error)", "model", "score"))


ACCURACY_AXIS = (-0.05, 1.1)


def _spaced_labels(points: list[dict[str, Any]], min_gap: float = 0.08) -> list[bool]:
    """Which points get a text label: a point within `min_gap` of the axes' spans (x: the data's span; y: the
    fixed accuracy axis) of an already labelled one goes without (its legend entry and hover name it), so
    clustered mechanisms do not print over each other."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, ACCURACY_AXIS[1] - ACCURACY_AXIS[0]
    placed: list[tuple[float, float]] = []
    labelled = []
    for x, y in zip(xs, ys, strict=True):
        free = all(abs(x - px) / x_span > min_gap or abs(y - py) / y_span > min_gap for px, py in placed)
        if free:
            placed.append((x, y))
        labelled.append(free)
    return labelled


def decision_figure(views: list[RunView]) -> str | None:
    """Accuracy (mean primary metric over tasks) against memory at the last profiled turn, one point per
    model: up and to the left is better."""
    fig = go.Figure()
    axis = "memory"
    points: list[dict[str, Any]] = []
    for run_index, view in enumerate(views):
        eff = view.results.efficiency
        if eff is None or not view.results.accuracy:
            continue
        metrics = primary_metrics(view.results)
        source, axis = memory_metric(view)
        mechanisms = view.mechanisms
        for summary in eff.models:
            scores = [r.value for r in view.results.accuracy if r.model == summary.model and
                      metrics.get(r.task) == r.metric]
            records = [r for r in eff.records if r.model == summary.model]
            _, median, _, _ = _series(records, source)
            if not scores or median.size == 0:
                continue
            points.append({
                "x": median[-1] / MIB, "y": float(np.mean(scores)), "text": summary.model.removeprefix("zoo-"),
                "name": summary.model if len(views) == 1 else f"{view.label} · {summary.model}",
                "marker": {"size": 14, "color": COLORS.get(mechanisms.get(summary.model, ""), "#7f7f7f"),
                           "symbol": ["circle", "diamond", "square", "triangle-up"][run_index % 4]}})
    if not points:
        return None
    for point, labelled in zip(points, _spaced_labels(points), strict=True):
        fig.add_trace(go.Scatter(x=[point["x"]], y=[point["y"]], name=point["name"], marker=point["marker"],
                                 mode="markers+text" if labelled else "markers", text=[point["text"]],
                                 textposition="top center"))
    fig.update_yaxes(range=list(ACCURACY_AXIS))
    return figure_json(_layout(fig, "accuracy vs memory at the last turn (up and left is better)",
                               "MiB — " + axis, "mean accuracy over tasks"))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def training_figure(views: list[RunView], window: int = 50) -> str | None:
    """Training loss against step, a line per trained model (a moving average over `window` steps: every step
    trains on one lab task, so the raw curve jumps between tasks)."""
    fig = go.Figure()
    for run_index, view in enumerate(views):
        for record in view.results.config.models:
            loss = (record.training or {}).get("loss")
            if not loss:
                continue
            values = np.asarray(loss, dtype=float)
            width = min(window, len(values))
            smooth = np.convolve(values, np.ones(width) / width, mode="valid")
            steps = np.arange(width, len(values) + 1)
            name = record.name if len(views) == 1 else f"{view.label} · {record.name}"
            seed = record.training.get("seed", 0) if record.training else 0
            fig.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name=name, legendgroup=record.mechanism,
                                     line={"color": COLORS.get(record.mechanism, "#7f7f7f"), "width": 1.5,
                                           "dash": DASHES[(seed + run_index) % len(DASHES)]}))
    if not fig.data:
        return None
    fig.update_yaxes(type="log")
    return figure_json(_layout(fig, f"training loss (moving average over {window} steps)", "step",
                               "cross-entropy on answer tokens"))


def difficulty_figure(views: list[RunView]) -> str | None:
    """Fine-grained accuracy against glyph size (difficulty 1..4), a line per mechanism with its 95 % interval,
    and the chance level."""
    from casa_eval.data.lab.tasks import CHANCE, GLYPH_PX

    fig = go.Figure()
    for run_index, view in enumerate(views):
        lab = view.results.lab
        if lab is None:
            continue
        for model in dict.fromkeys(c.model for c in lab.cells):
            cells = sorted((c for c in lab.cells if c.model == model and c.difficulty is not None),
                           key=lambda c: c.difficulty or 0)
            if not cells:
                continue
            low = [c.seed_ci_low if c.seed_ci_low is not None else c.item_ci_low for c in cells]
            high = [c.seed_ci_high if c.seed_ci_high is not None else c.item_ci_high for c in cells]
            fig.add_trace(go.Scatter(
                x=[f"{GLYPH_PX[c.difficulty or 1]} px" for c in cells], y=[c.accuracy for c in cells],
                mode="lines+markers", name=model if len(views) == 1 else f"{view.label} · {model}",
                line={"color": COLORS.get(cells[0].mechanism, "#7f7f7f"), "dash": DASHES[run_index % len(DASHES)]},
                error_y={"type": "data", "symmetric": False,
                         "array": [h - c.accuracy for h, c in zip(high, cells, strict=True)],
                         "arrayminus": [c.accuracy - lo for lo, c in zip(low, cells, strict=True)]}))
    if not fig.data:
        return None
    fig.add_hline(y=CHANCE, line={"dash": "dot", "color": "#888888"}, annotation_text="chance")
    fig.update_yaxes(range=list(ACCURACY_AXIS))
    return figure_json(_layout(fig, "fine-grained accuracy vs glyph size (harder to the right)", "glyph side",
                               "accuracy (95 % interval)"))
