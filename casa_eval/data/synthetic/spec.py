"""What a synthetic set is: one frozen, hashable spec per (kind, seed, size, difficulty, renderer version).

The spec's content hash names its cache directory, so any change to a field (or a `GENERATOR_VERSION` bump)
gives a fresh directory instead of silently reusing images rendered under other settings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SyntheticKind = Literal["docvqa", "chartqa"]

# Bump whenever a renderer's output (pixels, questions or record fields) changes for the same spec.
GENERATOR_VERSION = 1

# Largest number of labelled fields every form type can show, and of categories every chart theme offers;
# `forms.py` and `chart_data.py` check their pools against these.
MAX_FIELDS = 12
MAX_BARS = 8

# Per-kind defaults for the fields whose sensible value depends on the kind (a form is portrait, a chart
# landscape; chart labels are smaller than form text).
_KIND_DEFAULTS: dict[str, dict[str, int]] = {
    "docvqa": {"image_width": 612, "image_height": 792, "font_size_min": 13, "font_size_max": 20},
    "chartqa": {"image_width": 640, "image_height": 480, "font_size_min": 11, "font_size_max": 15},
}
_PER_KIND = 0


class SyntheticSpec(BaseModel):
    """A synthetic DocVQA-like (`docvqa`) or ChartQA-like (`chartqa`) evaluation set.

    `image_width`, `image_height` and `font_size_min/max` default per kind (612x792 forms with 13-20 px text;
    640x480 charts with 11-15 px labels). `fields_min/max` (labelled fields per form) only affect `docvqa`;
    `bars_min/max` (bars per chart) only affect `chartqa`. Each document draws its own value uniformly from
    each inclusive range. `generator_version` must equal this package's `GENERATOR_VERSION`: a spec written
    for another renderer fails loudly instead of loading images it did not ask for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SyntheticKind
    seed: int
    num_docs: int = Field(600, ge=1, le=100_000)
    # These four default per kind (`_kind_defaults` fills them before validation); the placeholder 0 only tells
    # type checkers they may be omitted, and would fail validation should it ever get through.
    image_width: int = Field(_PER_KIND, ge=320, le=2048, validate_default=True)
    image_height: int = Field(_PER_KIND, ge=240, le=2048, validate_default=True)
    font_size_min: int = Field(_PER_KIND, ge=8, le=48, validate_default=True)
    font_size_max: int = Field(_PER_KIND, ge=8, le=48, validate_default=True)
    fields_min: int = Field(4, ge=1, le=MAX_FIELDS)
    fields_max: int = Field(10, ge=1, le=MAX_FIELDS)
    bars_min: int = Field(3, ge=2, le=MAX_BARS)
    bars_max: int = Field(8, ge=2, le=MAX_BARS)
    generator_version: int = GENERATOR_VERSION

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in _KIND_DEFAULTS:
            return {**_KIND_DEFAULTS[data["kind"]], **data}
        return data

    @model_validator(mode="after")
    def _ranges_ordered(self) -> SyntheticSpec:
        for low, high in (("font_size_min", "font_size_max"), ("fields_min", "fields_max"), ("bars_min", "bars_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        if self.generator_version != GENERATOR_VERSION:
            raise ValueError(
                f"spec asks for generator_version {self.generator_version}, but this casa-eval renders version "
                f"{GENERATOR_VERSION}; update the spec (its images will differ)"
            )
        return self

    def canonical_json(self) -> str:
        """The spec as compact JSON with sorted keys: equal specs give equal strings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def content_hash(self) -> str:
        """First 12 hex characters of the sha256 of `canonical_json()`; stable across runs and machines."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:12]

    @property
    def dataset_name(self) -> str:
        """Directory name of this set inside a cache root: `{kind}-{content_hash}`."""
        return f"{self.kind}-{self.content_hash}"
