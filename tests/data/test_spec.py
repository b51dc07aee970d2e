"""SyntheticSpec: strict, frozen, per-kind defaults, a content hash that names the cache directory."""

from __future__ import annotations

import json
import re

import pydantic
import pytest

from casa_eval.data.synthetic.spec import GENERATOR_VERSION, SyntheticSpec
from tests.data.conftest import TASKS_DIR


def test_defaults_give_at_least_500_docs_and_kind_specific_canvases() -> None:
    doc, chart = SyntheticSpec(kind="docvqa", seed=0), SyntheticSpec(kind="chartqa", seed=0)
    assert doc.num_docs >= 500 and chart.num_docs >= 500
    assert doc.image_height > doc.image_width  # forms are portrait
    assert chart.image_width > chart.image_height  # charts are landscape
    assert doc.generator_version == chart.generator_version == GENERATOR_VERSION


def test_unknown_keys_are_rejected_and_specs_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        SyntheticSpec.model_validate({"kind": "docvqa", "seed": 0, "num_doc": 5})
    spec = SyntheticSpec(kind="docvqa", seed=0)
    with pytest.raises(pydantic.ValidationError):
        spec.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "override",
    [{"fields_min": 9, "fields_max": 3}, {"bars_min": 6, "bars_max": 4}, {"font_size_min": 20, "font_size_max": 10}],
)
def test_inverted_ranges_are_rejected(override: dict[str, int]) -> None:
    with pytest.raises(pydantic.ValidationError, match="must not exceed"):
        SyntheticSpec.model_validate({"kind": "chartqa", "seed": 0, **override})


def test_a_spec_for_another_generator_version_fails_loudly() -> None:
    with pytest.raises(pydantic.ValidationError, match="generator_version"):
        SyntheticSpec(kind="docvqa", seed=0, generator_version=GENERATOR_VERSION + 1)


def test_content_hash_is_stable_and_changes_with_every_field() -> None:
    spec = SyntheticSpec(kind="docvqa", seed=7, num_docs=20)
    assert re.fullmatch(r"[0-9a-f]{12}", spec.content_hash)
    assert SyntheticSpec.model_validate_json(spec.canonical_json()).content_hash == spec.content_hash
    assert spec.dataset_name == f"docvqa-{spec.content_hash}"
    variants = [
        spec.model_copy(update={"seed": 8}),
        spec.model_copy(update={"num_docs": 21}),
        spec.model_copy(update={"fields_max": 9}),
        SyntheticSpec(kind="chartqa", seed=7, num_docs=20),
    ]
    assert len({spec.content_hash, *(v.content_hash for v in variants)}) == 1 + len(variants)


@pytest.mark.parametrize(
    ("task", "kind", "seed"), [("synth_docvqa", "docvqa", 1234), ("synth_chartqa", "chartqa", 4321)]
)
def test_task_spec_files_hold_one_valid_full_size_spec(task: str, kind: str, seed: int) -> None:
    lines = (TASKS_DIR / task / "spec.jsonl").read_text().splitlines()
    assert len(lines) == 1
    spec = SyntheticSpec.model_validate(json.loads(lines[0]))
    assert (spec.kind, spec.seed, spec.num_docs) == (kind, seed, 600)
    assert lines[0] == spec.canonical_json()  # every field explicit: the file alone defines the set
