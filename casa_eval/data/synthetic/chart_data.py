"""The content of synthetic bar charts: themed categories, distinct values, and one question each.

Values within a chart are distinct, so "highest" and "lowest" always name exactly one bar, and never zero,
because lmms-eval's `relaxed_correctness` falls back to exact string matching when the target is 0.
Categories are words, never numbers (years), so a label answer is never scored with numeric tolerance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from casa_eval.data.synthetic.spec import MAX_BARS

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True)
class _Measure:
    """What the bars measure: the chart title, the largest values it plausibly reaches, and its precision."""

    title: str
    scales: tuple[int, ...] = (20, 60, 100, 250, 800, 2500)
    decimals: int = 0  # 1: values like 12.5


@dataclass(frozen=True)
class _Theme:
    noun: str  # what one category is ("crop"), used in label questions
    measures: tuple[_Measure, ...]
    categories: tuple[str, ...]
    ordered: bool = False  # months: draw a consecutive run in calendar order


_THEMES = (
    _Theme(
        "crop",
        (
            _Measure("Harvest by crop (kt)"),
            _Measure("Crop yield by type (t/ha)", (10, 20), 1),
            _Measure("Area planted by crop (kha)"),
        ),
        ("Wheat", "Rice", "Maize", "Barley", "Oats", "Soy", "Rye", "Millet", "Sorghum", "Canola"),
    ),
    _Theme(
        "fruit",
        (
            _Measure("Fruit sales by type (crates)"),
            _Measure("Fruit imports (t)"),
            _Measure("Average price by fruit (EUR/kg)", (5, 10), 1),
        ),
        ("Apples", "Pears", "Mangoes", "Grapes", "Plums", "Lemons", "Kiwis", "Cherries", "Peaches", "Figs"),
    ),
    _Theme(
        "city",
        (
            _Measure("Average rainfall by city (mm)", (60, 100, 250), 1),
            _Measure("Mean temperature by city (°C)", (20, 40), 1),
            _Measure("Sunny days per city", (365,)),
        ),
        ("Lyon", "Osaka", "Porto", "Leeds", "Austin", "Bergen", "Turin", "Hobart", "Calgary", "Dresden"),
    ),
    _Theme(
        "month",
        (
            _Measure("Website visits per month (k)"),
            _Measure("Support tickets per month"),
            _Measure("Monthly sales (kEUR)"),
        ),
        tuple(_MONTHS),
        ordered=True,
    ),
    _Theme(
        "department",
        (
            _Measure("Headcount by department", (20, 60, 100, 250)),
            _Measure("Training hours by department"),
            _Measure("Budget by department (kUSD)"),
        ),
        ("Sales", "Finance", "Legal", "IT", "HR", "Support", "Research", "Design", "Ops"),
    ),
    _Theme(
        "sport",
        (
            _Measure("Club members by sport"),
            _Measure("Match attendance by sport (k)", (20, 60, 100)),
            _Measure("Injuries reported by sport", (20, 60, 100)),
        ),
        ("Tennis", "Soccer", "Rugby", "Cricket", "Hockey", "Golf", "Boxing", "Rowing", "Cycling", "Skiing"),
    ),
    _Theme(
        "product",
        (
            _Measure("Units sold by product"),
            _Measure("Returns by product", (20, 60, 100, 250)),
            _Measure("Stock on hand by product"),
        ),
        ("Laptops", "Phones", "Tablets", "Monitors", "Cameras", "Printers", "Routers", "Speakers"),
    ),
)
_VALUE_QUESTIONS = ("What is the value of {c}?", "What value does {c} have?", "How much is {c}?")


@dataclass(frozen=True)
class ChartContent:
    """A chart's data and its question; `value_labels` are the strings drawn above the bars."""

    title: str
    noun: str
    categories: list[str]
    values: list[float]
    value_labels: list[str]
    decimals: int
    question: str
    answer: str
    question_kind: str  # "value", "highest" or "lowest"

    @property
    def answer_type(self) -> str:
        """ChartQA's split: lmms-eval scores `human_test` docs into `relaxed_human_split`, others into
        `relaxed_augmented_split`; label questions count as human, numeric ones as augmented."""
        return "augmented_test" if self.question_kind == "value" else "human_test"


def make_chart(rng: random.Random, num_bars: int) -> ChartContent:
    """A random themed chart with `num_bars` bars (2..MAX_BARS) of distinct non-zero values, and a question."""
    theme = rng.choice(_THEMES)
    if theme.ordered:
        start = rng.randrange(len(theme.categories) - num_bars + 1)
        categories = list(theme.categories[start : start + num_bars])
    else:
        categories = rng.sample(theme.categories, num_bars)
    measure = rng.choice(theme.measures)
    scale = rng.choice(measure.scales)
    unit = 10**-measure.decimals
    # Distinct integers in units of the last drawn digit, at least 5% of the scale so every bar is visible.
    low, high = max(1, round(scale * 0.05 / unit)), round(scale / unit)
    ticks = rng.sample(range(low, high + 1), num_bars)
    values = [round(t * unit, measure.decimals) for t in ticks]
    labels = [f"{v:.{measure.decimals}f}" for v in values]
    kind = rng.choice(["value", "value", "highest", "lowest"])
    if kind == "value":
        i = rng.randrange(num_bars)
        question, answer = rng.choice(_VALUE_QUESTIONS).format(c=categories[i]), labels[i]
    else:
        pick = max if kind == "highest" else min
        i = pick(range(num_bars), key=values.__getitem__)
        word = rng.choice(["category", theme.noun])
        question, answer = f"Which {word} has the {kind} value?", categories[i]
    return ChartContent(measure.title, theme.noun, categories, values, labels, measure.decimals, question, answer, kind)


def _check_themes() -> None:
    for theme in _THEMES:
        if len(theme.categories) < MAX_BARS or len(set(theme.categories)) != len(theme.categories):
            raise AssertionError(f"theme {theme.noun} needs {MAX_BARS} distinct categories")


_check_themes()
