"""The profiler drives every mechanism through the streaming protocol and records each turn."""

from __future__ import annotations

import itertools

import pytest

from casa_eval.profiling.runner import expand_models, profile_models
from casa_eval.registry import ZOO_MODELS
from tests.profiling.helpers import tiny_profile


@pytest.fixture(scope="module")
def every_mechanism():  # type: ignore[no-untyped-def]
    return profile_models(tiny_profile(scenario={"repeats": 2}), list(ZOO_MODELS))


def test_one_record_per_model_repeat_and_turn(every_mechanism) -> None:  # type: ignore[no-untyped-def]
    records = every_mechanism.records
    assert len(records) == len(ZOO_MODELS) * 2 * 4
    assert {r.repeat for r in records} == {0, 1}  # the warm-up session is not recorded
    for r in records:
        assert r.ttft_ms > 0 and r.turn_ms >= r.ttft_ms and r.decode_ms_per_token > 0
        assert r.generated_tokens == 3 and not r.oom
        assert r.rss_bytes > 0 and r.peak_rss_bytes > 0


def test_measured_kv_bytes_equal_analytic_for_every_mechanism_and_turn(every_mechanism) -> None:  # type: ignore[no-untyped-def]
    for r in every_mechanism.records:
        assert r.kv_bytes == r.analytic_kv_bytes, (r.model, r.turn)
        assert r.side_state_bytes == r.analytic_side_state_bytes, (r.model, r.turn)
    assert all(m.kv_bytes_match_analytic for m in every_mechanism.models)


def test_cache_growth_per_turn_is_the_mechanism_s(every_mechanism) -> None:  # type: ignore[no-untyped-def]
    def growth(model: str) -> set[int]:
        tokens = [r.kv_tokens for r in every_mechanism.records if r.model == model and r.repeat == 0]
        return {b - a for a, b in itertools.pairwise(tokens[1:])}  # turn 0 has no carried token

    text = growth("zoo-text-only")
    assert len(text) == 1
    (t,) = text
    assert growth("zoo-casa") == growth("zoo-cross-attention") == {t}
    assert growth("zoo-insertion") == {t + 16}  # N = 16 visual tokens per frame
    assert growth("zoo-qformer") == {t + 4}  # Q = 4


def test_summaries_ratios_and_crossovers(every_mechanism) -> None:  # type: ignore[no-untyped-def]
    by_name = {m.model: m for m in every_mechanism.models}
    assert by_name["zoo-text-only"].ratio_to_floor_first == pytest.approx(1.0)
    assert by_name["zoo-casa"].ratio_to_floor_first is not None
    assert by_name["zoo-casa"].turns_completed == 4 and by_name["zoo-casa"].oom_turn is None
    assert "turn_ms" in by_name["zoo-casa"].slopes and "kv_bytes" in by_name["zoo-insertion"].slopes
    assert by_name["zoo-insertion"].slopes["kv_bytes"].value > by_name["zoo-casa"].slopes["kv_bytes"].value
    projected = by_name["zoo-insertion"].turns_before_oom["80"]
    assert projected is not None and projected < by_name["zoo-casa"].turns_before_oom["80"]
    assert {(c.model, c.metric) for c in every_mechanism.crossovers} >= {("zoo-casa", "turn_ms")}
    assert [r.name for r in every_mechanism.model_records] == list(ZOO_MODELS)


def test_sweep_expands_the_qformer() -> None:
    profile = tiny_profile(sweep={"qformer_queries": [2, 8]})
    names = [v.name for v in expand_models(profile, ["zoo-casa", "zoo-qformer"])]
    assert names == ["zoo-casa", "zoo-qformer[qformer_queries=2]", "zoo-qformer[qformer_queries=8]"]
    section = profile_models(profile, ["zoo-qformer"], turns=2)
    tokens = {m.model: m.last["kv_tokens"] for m in section.models}
    assert tokens["zoo-qformer[qformer_queries=8]"] - tokens["zoo-qformer[qformer_queries=2]"] == 2 * 6


def test_memory_budget_records_the_oom_turn_and_the_next_model_runs() -> None:
    # A budget just above what text-only needs for 6 turns: insertion (16 more tokens per turn) crosses it early.
    free = profile_models(tiny_profile(scenario={"turns": 6}), ["zoo-text-only"])
    needed = max(r.kv_bytes + r.side_state_bytes for r in free.records)
    profile = tiny_profile(memory_budget=needed + 1, scenario={"turns": 6, "repeats": 2})
    section = profile_models(profile, ["zoo-insertion", "zoo-text-only"])
    insertion = [r for r in section.records if r.model == "zoo-insertion"]
    assert insertion[-1].oom and all(not r.oom for r in insertion[:-1])
    assert {r.repeat for r in insertion} == {0}  # the other repeats would fail at the same turn
    summary = {m.model: m for m in section.models}
    assert summary["zoo-insertion"].oom_turn == insertion[-1].turn < 6
    assert summary["zoo-insertion"].turns_completed == insertion[-1].turn
    assert summary["zoo-text-only"].oom_turn is None and summary["zoo-text-only"].turns_completed == 6
    assert len([r for r in section.records if r.model == "zoo-text-only"]) == 12
