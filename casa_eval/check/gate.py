"""`casa-eval check`: judge a run against thresholds and, optionally, a baseline run.

Verdicts: `pass`, `fail` (a regression: exit 1) and `invalid` (a rule that matches nothing, data that is
missing, or a baseline that cannot be compared: exit 2). Efficiency ratios are judged only when both runs
share the environment fingerprint (CPU/GPU, device, library versions) and the same profile.

Some inputs are not a verdict at all, and the gate refuses them (exit 2 even when a rule also fails): a
thresholds file without rules, a candidate or baseline run that did not complete (interrupted or failed), and
a baseline cell (model x task x metric) that a rule covers but the candidate lacks.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from casa_eval.check.thresholds import (
    AbsoluteRule,
    AccuracyDropRule,
    EfficiencyRatioRule,
    InvariantRule,
    Thresholds,
)
from casa_eval.errors import UserError
from casa_eval.results.schema import RESULTS_FILE, RunResults, load_results
from casa_eval.results.stats import t_quantile

Verdict = Literal["pass", "fail", "invalid", "skip"]  # skip: not judged, by the thresholds' choice
REFUSALS = ("thresholds", "run", "missing")  # kinds of invalid result that make the whole check no verdict


@dataclass(frozen=True)
class CheckResult:
    kind: str  # absolute | accuracy_drop | efficiency_ratio | invariant
    subject: str
    value: str
    threshold: str
    verdict: Verdict
    detail: str = ""


@dataclass
class Run:
    results: RunResults
    directory: Path

    @classmethod
    def load(cls, path: str | Path) -> Run:
        p = Path(path)
        directory = p if p.is_dir() else p.parent
        return cls(load_results(directory / RESULTS_FILE if p.is_dir() else p), directory)

    def samples(self, model: str, task: str) -> dict[int, dict[str, float]] | None:
        relative = self.results.files.get(f"samples:{model}|{task}")
        if relative is None or not (self.directory / relative).is_file():
            return None
        path, out = self.directory / relative, {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                out[int(record["doc_id"])] = dict(record["scores"])
            except (ValueError, TypeError, KeyError):
                raise UserError(f"{path}:{number}: not a per-sample record (doc_id and scores)") from None
        return out


def exit_code(results: list[CheckResult]) -> int:
    if any(r.verdict == "invalid" and r.kind in REFUSALS for r in results):
        return 2
    if any(r.verdict == "fail" for r in results):
        return 1
    if any(r.verdict == "invalid" for r in results):
        return 2
    return 0


def run_checks(candidate: Run, thresholds: Thresholds, baseline: Run | None = None) -> list[CheckResult]:
    rows = candidate.results.to_dataframe()
    out = _refusals(candidate, thresholds, baseline)
    for rule in thresholds.absolute:
        out += _absolute(rule, rows)
    if (thresholds.accuracy_drop or thresholds.efficiency_ratio) and baseline is None:
        out.append(CheckResult("baseline", "--baseline", "missing", "required by the thresholds", "invalid",
                               "accuracy_drop / efficiency_ratio rules need a baseline run"))
    if baseline is not None:
        for drop in thresholds.accuracy_drop:
            out += _accuracy_drop(drop, candidate, baseline)
        comparable, why = comparable_environments(candidate.results, baseline.results)
        other_machine = candidate.results.environment.fingerprint != baseline.results.environment.fingerprint
        skip = other_machine and thresholds.other_hardware == "skip"
        for ratio in thresholds.efficiency_ratio:
            out += _efficiency_ratio(ratio, rows, candidate.results, baseline.results, comparable, why, skip=skip)
    for invariant in thresholds.invariants:
        out += _invariant(invariant, candidate.results)
    return out


def _refusals(candidate: Run, thresholds: Thresholds, baseline: Run | None) -> list[CheckResult]:
    out = []
    if not (thresholds.absolute or thresholds.accuracy_drop or thresholds.efficiency_ratio or thresholds.invariants):
        out.append(CheckResult("thresholds", "rules", "none", ">= 1 rule", "invalid",
                               "the thresholds file holds no rules, so nothing would be checked"))
    for role, run in (("candidate", candidate), ("baseline", baseline)):
        if run is not None and run.results.status.state != "complete":
            out.append(CheckResult("run", f"{role} {run.directory}", run.results.status.state, "complete", "invalid",
                                   f"the {role} run is {run.results.status.state}, not complete; finish it with "
                                   f"casa-eval run --resume {run.directory}"))
    if baseline is not None:
        out += _missing_cells(candidate, thresholds, baseline)
    return out


def _missing_cells(candidate: Run, thresholds: Thresholds, baseline: Run) -> list[CheckResult]:
    """Baseline cells a comparison rule covers that the candidate lacks (a model, task or metric dropped)."""
    have = {(r.model, r.task, r.metric) for r in candidate.results.to_dataframe().fillna({"task": ""}).itertuples()}
    rules: list[tuple[str, Any]] = ([("accuracy", r) for r in thresholds.accuracy_drop]
                                    + [("efficiency", r) for r in thresholds.efficiency_ratio])
    out = []
    for row in baseline.results.to_dataframe().fillna({"task": ""}).itertuples():
        cell = (row.model, row.task, row.metric)
        if cell not in have and any(section == row.section and rule.matches(row.section, *cell)
                                    for section, rule in rules):
            out.append(CheckResult("missing", " / ".join(cell), "absent", "present in the baseline", "invalid",
                                   "in the baseline but missing from the candidate"))
    return out


# ---------------------------------------------------------------------------------------------- rules


def _matching(rule: Any, rows: Any) -> Any:
    mask = [rule.matches(s, m, t, k) for s, m, t, k in zip(rows.section, rows.model, rows.task.fillna(""),
                                                             rows.metric, strict=True)]
    return rows[mask]


def _absolute(rule: AbsoluteRule, rows: Any) -> list[CheckResult]:
    hits = _matching(rule, rows)
    bound = " and ".join(b for b in (f">= {rule.min:g}" if rule.min is not None else "",
                                      f"<= {rule.max:g}" if rule.max is not None else "") if b)
    if hits.empty:
        return [CheckResult("absolute", rule.label(), "no such value", bound, "invalid", "the rule matches nothing")]
    out = []
    for row in hits.itertuples():
        if not math.isfinite(row.value):
            out.append(_not_finite("absolute", row, bound))
            continue
        ok = (rule.min is None or row.value >= rule.min) and (rule.max is None or row.value <= rule.max)
        out.append(CheckResult("absolute", f"{row.model} / {row.task} / {row.metric}", f"{row.value:.6g}", bound,
                               "pass" if ok else "fail"))
    return out


def _accuracy_drop(rule: AccuracyDropRule, candidate: Run, baseline: Run) -> list[CheckResult]:
    """Fail if the mean paired drop exceeds max(tolerance, z x paired standard error)."""
    base = {(r.model, r.task, r.metric): r for r in baseline.results.accuracy}
    out = []
    for r in candidate.results.accuracy:
        if not rule.matches("accuracy", r.model, r.task, r.metric):
            continue
        subject = f"{r.model} / {r.task} / {r.metric}"
        if (r.model, r.task, r.metric) not in base:
            out.append(CheckResult("accuracy_drop", subject, f"{r.value:.4f}", "baseline", "invalid",
                                   "not in the baseline"))
            continue
        ours, theirs = candidate.samples(r.model, r.task), baseline.samples(r.model, r.task)
        if ours is None or theirs is None:
            out.append(CheckResult("accuracy_drop", subject, f"{r.value:.4f}", "paired samples", "invalid",
                                   "per-sample records missing"))
            continue
        shared = sorted(d for d in set(ours) & set(theirs) if r.metric in ours[d] and r.metric in theirs[d])
        if not shared:
            out.append(CheckResult("accuracy_drop", subject, "no shared samples", "paired samples", "invalid"))
            continue
        diff = np.array([ours[d][r.metric] - theirs[d][r.metric] for d in shared])
        if not np.isfinite(diff).all():
            out.append(CheckResult("accuracy_drop", subject, "non-finite sample scores", "paired samples",
                                   "invalid", "the measured value is not a finite number"))
            continue
        sign = 1.0 if r.higher_is_better else -1.0
        drop = -sign * float(diff.mean())  # positive = worse
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        multiplier = t_quantile(rule.z, len(diff) - 1) if se > 0 else 0.0  # t, not z: n may be a handful
        limit = max(rule.tolerance, multiplier * se)
        out.append(CheckResult("accuracy_drop", subject, f"drop {drop:+.4f} (n={len(diff)}, se={se:.4f})",
                               f"<= {limit:.4f}", "fail" if drop > limit else "pass"))
    if not out:
        out.append(CheckResult("accuracy_drop", rule.label(), "no such metric", "", "invalid",
                               "the rule matches nothing"))
    return out


def comparable_environments(a: RunResults, b: RunResults) -> tuple[bool, str]:
    if a.environment.fingerprint != b.environment.fingerprint:
        return False, (f"different hardware/environment ({a.environment.cpu}, {a.environment.device} vs "
                       f"{b.environment.cpu}, {b.environment.device})")
    if a.efficiency is None or b.efficiency is None:
        return False, "a run has no efficiency section"
    if a.efficiency.profile_config != b.efficiency.profile_config:
        return False, "different profiles (or turns / repeats)"
    videos = [None if s.video is None else Path(s.video).name for s in (a.efficiency, b.efficiency)]
    if videos[0] != videos[1]:  # by file name: a cache directory differs between machines, the clip does not
        return False, f"different videos streamed ({videos[0]} vs {videos[1]})"
    return True, ""


def _not_finite(kind: str, row: Any, threshold: str) -> CheckResult:
    return CheckResult(kind, f"{row.model} / {row.task} / {row.metric}", str(row.value), threshold, "invalid",
                       "the measured value is not a finite number")


def _efficiency_ratio(rule: EfficiencyRatioRule, rows: Any, candidate: RunResults, baseline: RunResults,
                      comparable: bool, why: str, *, skip: bool = False) -> list[CheckResult]:
    """Candidate / baseline, judged on the per-turn measurements behind each summary (every repeat's turns
    in the window), not on two medians: a 95 % bootstrap interval of the ratio of medians, and a regression
    only when the whole interval lies above `max_ratio` — noise that moves one median past the threshold
    does not fail the gate, a shift larger than the noise does."""
    hits = _matching(rule, rows)
    hits = hits[~hits.metric.str.endswith("_slope")]  # slopes take absolute rules (see EfficiencyRatioRule)
    threshold = f"<= {rule.max_ratio:g}x baseline"
    if hits.empty:
        return [CheckResult("efficiency_ratio", rule.label(), "no such value", threshold, "invalid",
                            "the rule matches nothing")]
    base = {(r.model, r.task, r.metric): r.value for r in baseline.to_dataframe().itertuples()}
    out = []
    for row in hits.itertuples():
        subject = f"{row.model} / {row.task} / {row.metric}"
        if not math.isfinite(row.value):
            out.append(_not_finite("efficiency_ratio", row, threshold))
            continue
        if not comparable:
            out.append(CheckResult("efficiency_ratio", subject, f"{row.value:.6g}", threshold,
                                   "skip" if skip else "invalid",
                                   f"not comparable: {why}" + ("; skipped (other_hardware: skip)" if skip else "")))
            continue
        reference = base.get((row.model, row.task, row.metric))
        if reference is None or reference == 0 or not math.isfinite(reference):
            out.append(CheckResult("efficiency_ratio", subject, f"{row.value:.6g}", threshold, "invalid",
                                   "no baseline value"))
            continue
        ratio = row.value / reference
        ours, theirs = window_samples(candidate, row.model, row.metric), window_samples(baseline, row.model, row.metric)
        if ours is None or theirs is None or not (ours > 0).all() or not (theirs > 0).all():
            # one value per run (peak memory) or nothing per turn: the ratio itself is the verdict
            out.append(CheckResult("efficiency_ratio", subject, f"{ratio:.3f}x ({row.value:.6g})", threshold,
                                   "pass" if ratio <= rule.max_ratio else "fail"))
            continue
        low, high = ratio_interval(ours, theirs)
        verdict: Verdict = "fail" if low > rule.max_ratio else "pass"
        detail = f"the whole 95 % interval of the ratio is above {rule.max_ratio:g}" if verdict == "fail" else ""
        out.append(CheckResult("efficiency_ratio", subject,
                               f"{ratio:.3f}x [{low:.3f}, {high:.3f}] (n={len(ours)}/{len(theirs)})", threshold,
                               verdict, detail))
    return out


def window_samples(results: RunResults, model: str, metric: str) -> np.ndarray | None:
    """Every repeat's measurement of a windowed metric (`turn_ms_last10pct`: turn_ms in the last 10 % of
    turns, the window the summary's median is taken over); None for metrics without per-turn records."""
    from casa_eval.profiling.analysis import WINDOW_METRICS, window_turns

    name, _, which = metric.rpartition("_")
    if results.efficiency is None or which not in ("first10pct", "last10pct") or name not in WINDOW_METRICS:
        return None
    records = [r for r in results.efficiency.records
               if r.model == model and not r.oom and getattr(r, name) is not None]
    if not records:
        return None
    chosen = window_turns(max(r.turn for r in records) + 1, which.removesuffix("10pct"))
    return np.array([float(getattr(r, name)) for r in records if r.turn in chosen])


def ratio_interval(candidate: np.ndarray, baseline: np.ndarray, *, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of median(candidate) / median(baseline), each resampled on its own."""
    rng = np.random.default_rng(seed)
    ours = np.median(rng.choice(candidate, (resamples, len(candidate))), axis=1)
    theirs = np.median(rng.choice(baseline, (resamples, len(baseline))), axis=1)
    low, high = np.percentile(ours / theirs, [2.5, 97.5])
    return float(low), float(high)


def _invariant(rule: InvariantRule, results: RunResults) -> list[CheckResult]:
    from fnmatch import fnmatchcase

    if rule.check == "accuracy_matches_lmms_eval":
        rows = [r for r in results.accuracy if fnmatchcase(r.model, rule.model)]
        bad = [f"{r.model}/{r.task}/{r.metric}" for r in rows
               if r.lmms_eval_value is None or abs(r.value - r.lmms_eval_value) > 1e-9]
        return [_invariant_result(rule, len(rows), bad, "mean of per-sample scores == lmms-eval's aggregate")]
    if results.efficiency is None:
        return [CheckResult("invariant", f"{rule.check} ({rule.model})", "no efficiency section", "", "invalid")]
    records = [r for r in results.efficiency.records if fnmatchcase(r.model, rule.model) and not r.oom]
    if rule.check == "kv_bytes_match_analytic":
        bad = [f"{r.model}#{r.repeat}:{r.turn}" for r in records
               if r.kv_bytes != r.analytic_kv_bytes or r.side_state_bytes != r.analytic_side_state_bytes]
        return [_invariant_result(rule, len(records), bad, "measured KV / side-state bytes == analytic")]
    return [_kv_growth(rule, results, records)]


def _invariant_result(rule: InvariantRule, n: int, bad: list[str], what: str) -> CheckResult:
    if n == 0:
        return CheckResult("invariant", f"{rule.check} ({rule.model})", "no matching records", what, "invalid")
    shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
    return CheckResult("invariant", f"{rule.check} ({rule.model})", f"{n - len(bad)}/{n} hold", what,
                       "fail" if bad else "pass", shown)


def _kv_growth(rule: InvariantRule, results: RunResults, records: list[Any]) -> CheckResult:
    """Per turn, the backbone cache grows by exactly the text tokens fed (+ N visual tokens for insertion,
    + Q for the Q-Former), and its bytes by tokens x 2 x layers x kv_heads x head_dim x dtype bytes."""
    assert results.efficiency is not None
    models = {m.name: m for m in results.efficiency.model_records}
    bad, checked = [], 0
    by_run: dict[tuple[str, int], list[Any]] = {}
    for r in records:
        by_run.setdefault((r.model, r.repeat), []).append(r)
    for (model, repeat), turns in by_run.items():
        spec = models.get(model)
        if spec is None or spec.kv_bytes_per_token is None or spec.cache_tokens_per_image is None:
            continue
        per_token, inserted = spec.kv_bytes_per_token, spec.cache_tokens_per_image
        turns = sorted(turns, key=lambda r: r.turn)
        for prev, cur in itertools.pairwise(turns):
            tokens = cur.prompt_tokens + cur.generated_tokens - 1 + inserted  # the last token is fed next turn
            checked += 1
            if cur.kv_tokens - prev.kv_tokens != tokens or cur.kv_bytes - prev.kv_bytes != tokens * per_token:
                bad.append(f"{model}#{repeat}:{cur.turn}")
    return _invariant_result(rule, checked, bad, "KV growth per turn == fed text (+ inserted) tokens x bytes/token")
