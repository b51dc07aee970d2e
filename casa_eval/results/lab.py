"""The lab section of a results document: trained mechanisms compared on the lab tasks, over test items and
over training seeds (docs/lab.md).

* cells — accuracy per mechanism x task (x difficulty), the mean over seeds, with a 95 % interval over the
  200 test items (Wilson for one seed; normal over per-item means across seeds) and, with two seeds or more,
  a 95 % t interval over seeds (what another training run would give);
* comparisons — every mechanism minus insertion on the same items (paired): the mean difference and its 95 %
  interval (over seeds when there are two or more, else over items);
* gap closed — as the paper frames it, (m - cross_attention) / (insertion - cross_attention), with a 95 %
  bootstrap interval over items; undefined where insertion and cross-attention do not differ by at least
  one item in twenty.

Models are grouped by name without their seed suffix: `lab-casa`, `lab-casa@seed1`, `lab-casa@seed2` are three
training runs of one mechanism.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from casa_eval.data.lab.tasks import LAB_TASKS
from casa_eval.results.record import ResultRecord
from casa_eval.results.stats import t_quantile

Z95 = 1.959963984540054
MIN_GAP = 0.05  # insertion - cross_attention below this: "gap closed" is not defined


class LabCell(ResultRecord):
    model: str = Field(description="model name without a seed suffix, e.g. lab-casa")
    mechanism: str
    task: str
    family: str
    difficulty: int | None
    chance: float
    seeds: list[int]
    accuracy: float = Field(description="mean over seeds of the accuracy on the test items")
    item_ci_low: float
    item_ci_high: float
    seed_sd: float | None = Field(description="standard deviation over seeds (None with one seed)")
    seed_ci_low: float | None
    seed_ci_high: float | None
    n_items: int
    per_seed: dict[str, float] = Field(description="seed -> accuracy")


class PairedComparison(ResultRecord):
    model: str
    reference: str
    task: str
    difference: float = Field(description="accuracy of model minus reference on the same items, mean over seeds")
    ci_low: float
    ci_high: float
    over: str = Field(description="seeds | items: what the interval is over")
    n_items: int


class GapClosed(ResultRecord):
    model: str
    task: str
    fraction: float | None = Field(description="(m - cross_attention) / (insertion - cross_attention); None when "
                                               "the gap is below 0.05")
    ci_low: float | None
    ci_high: float | None
    gap: float = Field(description="insertion - cross_attention")


class LabSection(ResultRecord):
    cells: list[LabCell] = Field(default_factory=list)
    comparisons: list[PairedComparison] = Field(default_factory=list)
    gap_closed: list[GapClosed] = Field(default_factory=list)


def base_name(model: str) -> tuple[str, int]:
    """`lab-casa@seed2` -> (`lab-casa`, 2); a name without a suffix is seed 0."""
    name, _, seed = model.partition("@seed")
    return name, int(seed) if seed.isdigit() else 0


def lab_section(results: Any, directory: Path) -> LabSection | None:
    """The lab section of a run (None when it evaluated no lab task)."""
    scores = _scores(results, directory)  # (base, task) -> seed -> doc -> score
    if not scores:
        return None
    mechanisms = {base_name(m.name)[0]: m.mechanism for m in results.config.models}
    cells = [_cell(base, mechanisms.get(base, "?"), task, by_seed) for (base, task), by_seed in scores.items()]
    by_mechanism = {mechanisms.get(base): base for base, _ in scores}
    comparisons, gaps = [], []
    insertion, cross = by_mechanism.get("insertion"), by_mechanism.get("cross_attention")
    for (base, task), by_seed in scores.items():
        if insertion is not None and base != insertion and (insertion, task) in scores:
            comparisons.append(_paired(base, insertion, task, by_seed, scores[(insertion, task)]))
        if insertion and cross and base not in (insertion, cross) and (insertion, task) in scores \
                and (cross, task) in scores:
            gaps.append(_gap(base, task, by_seed, scores[(insertion, task)], scores[(cross, task)]))
    return LabSection(cells=cells, comparisons=comparisons, gap_closed=gaps)


def _scores(results: Any, directory: Path) -> dict[tuple[str, str], dict[int, dict[int, float]]]:
    out: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(dict)
    for key, relative in results.files.items():
        if not key.startswith("samples:"):
            continue
        model, task = key.removeprefix("samples:").split("|", 1)
        if task not in LAB_TASKS or not (directory / relative).is_file():
            continue
        base, seed = base_name(model)
        with (directory / relative).open() as f:
            out[(base, task)][seed] = {r["doc_id"]: float(r["scores"]["accuracy"]) for r in map(json.loads, f)}
    return dict(out)


def _items(by_seed: dict[int, dict[int, float]]) -> tuple[list[int], np.ndarray]:
    """Items scored for every seed, and the [seeds, items] score matrix."""
    docs = sorted(set.intersection(*(set(s) for s in by_seed.values())))
    return docs, np.array([[by_seed[seed][d] for d in docs] for seed in sorted(by_seed)])


def _cell(base: str, mechanism: str, task: str, by_seed: dict[int, dict[int, float]]) -> LabCell:
    spec = LAB_TASKS[task]
    _, matrix = _items(by_seed)
    k, n = matrix.shape
    per_seed = matrix.mean(1)
    mean = float(per_seed.mean())
    if k == 1:
        low, high = _wilson(float(matrix.sum()), n)
    else:
        per_item = matrix.mean(0)
        half = Z95 * float(per_item.std(ddof=1)) / math.sqrt(n)
        low, high = max(0.0, mean - half), min(1.0, mean + half)
    sd = float(per_seed.std(ddof=1)) if k > 1 else None
    half_seed = t_quantile(Z95, k - 1) * sd / math.sqrt(k) if sd is not None else None
    return LabCell(model=base, mechanism=mechanism, task=task, family=spec.family, difficulty=spec.difficulty,
                   chance=spec.chance, seeds=sorted(by_seed), accuracy=mean, item_ci_low=low, item_ci_high=high,
                   seed_sd=sd, seed_ci_low=None if half_seed is None else mean - half_seed,
                   seed_ci_high=None if half_seed is None else mean + half_seed, n_items=n,
                   per_seed={str(s): float(v) for s, v in zip(sorted(by_seed), per_seed, strict=True)})


def _wilson(successes: float, n: int) -> tuple[float, float]:
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _paired(model: str, reference: str, task: str, ours: dict[int, dict[int, float]],
            theirs: dict[int, dict[int, float]]) -> PairedComparison:
    seeds = sorted(set(ours) & set(theirs))
    docs = sorted(set.intersection(*(set(ours[s]) & set(theirs[s]) for s in seeds)))
    diff = np.array([[ours[s][d] - theirs[s][d] for d in docs] for s in seeds])  # [seeds, items]
    mean = float(diff.mean())
    if len(seeds) > 1:
        per_seed = diff.mean(1)
        half, over = t_quantile(Z95, len(seeds) - 1) * float(per_seed.std(ddof=1)) / math.sqrt(len(seeds)), "seeds"
    else:
        half, over = Z95 * float(diff[0].std(ddof=1)) / math.sqrt(len(docs)), "items"
    return PairedComparison(model=model, reference=reference, task=task, difference=mean, ci_low=mean - half,
                            ci_high=mean + half, over=over, n_items=len(docs))


def _gap(model: str, task: str, ours: dict[int, dict[int, float]], insertion: dict[int, dict[int, float]],
         cross: dict[int, dict[int, float]], resamples: int = 2000) -> GapClosed:
    docs = sorted(set.intersection(*(set(x[s]) for x in (ours, insertion, cross) for s in x)))

    def item_means(scores: dict[int, dict[int, float]]) -> np.ndarray:
        return np.array([[scores[s][d] for d in docs] for s in sorted(scores)]).mean(0)

    m, i, c = item_means(ours), item_means(insertion), item_means(cross)
    gap = float(i.mean() - c.mean())
    if abs(gap) < MIN_GAP:
        return GapClosed(model=model, task=task, fraction=None, ci_low=None, ci_high=None, gap=gap)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(docs), size=(resamples, len(docs)))
    denominators = i[picks].mean(1) - c[picks].mean(1)
    ratios = (m[picks].mean(1) - c[picks].mean(1)) / np.where(np.abs(denominators) < 1e-9, np.nan, denominators)
    low, high = np.nanquantile(ratios, [0.025, 0.975])
    return GapClosed(model=model, task=task, fraction=(float(m.mean()) - float(c.mean())) / gap,
                     ci_low=float(low), ci_high=float(high), gap=gap)
