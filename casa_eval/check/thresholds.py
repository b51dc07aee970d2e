"""The thresholds file of `casa-eval check` (YAML, validated, unknown keys rejected).

```yaml
version: 1
absolute:            # floors/ceilings on any value of the results table (accuracy or efficiency)
  - {model: zoo-casa, task: synth_docvqa, metric: anls, min: 0.10}
  - {model: "zoo-*", section: efficiency, metric: kv_bytes_last10pct, max: 600000}
accuracy_drop:       # against --baseline, paired over the same samples
  - {model: "*", task: "*", metric: "*", tolerance: 0.02, z: 1.96}
efficiency_ratio:    # against --baseline, judged only on the same hardware and environment
  - {model: "*", metric: turn_ms_last10pct, max_ratio: 1.10}
  - {model: "*", metric: peak_memory_bytes, max_ratio: 1.05}
invariants:          # properties every run must have
  - {check: kv_bytes_match_analytic}
  - {check: kv_growth_matches_mechanism, model: zoo-casa}
  - {check: accuracy_matches_lmms_eval}
```

`model`, `task` and `metric` are shell-style patterns (`*`, `zoo-*`); a rule that matches nothing is an
error (a typo must not pass silently).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
    model: str = "*"
    task: str = "*"
    metric: str = "*"
    section: Literal["accuracy", "efficiency", "*"] = "*"

    def matches(self, section: str, model: str, task: str, metric: str) -> bool:
        return (self.section in ("*", section) and fnmatchcase(model, self.model)
                and fnmatchcase(task or "", self.task) and fnmatchcase(metric, self.metric))

    def label(self) -> str:
        return f"{self.model} / {self.task} / {self.metric}"


class AbsoluteRule(Selector):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> AbsoluteRule:
        if self.min is None and self.max is None:
            raise ValueError("an absolute rule needs min or max")
        return self


class AccuracyDropRule(Selector):
    section: Literal["accuracy", "efficiency", "*"] = "accuracy"
    tolerance: float = Field(0.0, ge=0, description="drops up to this much always pass")
    z: float = Field(1.96, ge=0, description="fail only beyond this many paired standard errors, as a normal "
                                             "quantile: with n pairs the gate uses Student's t quantile of the "
                                             "same level with n - 1 degrees of freedom (4.30 for z 1.96, n 3)")


class EfficiencyRatioRule(Selector):
    section: Literal["accuracy", "efficiency", "*"] = "efficiency"
    max_ratio: float = Field(gt=0, description="candidate / baseline must not exceed this")

    @model_validator(mode="after")
    def _not_on_slopes(self) -> EfficiencyRatioRule:
        if self.metric.endswith("_slope"):
            raise ValueError("a ratio of two slopes means nothing near zero; bound the slope with an absolute "
                             "rule (max) instead")
        return self


InvariantName = Literal["kv_bytes_match_analytic", "kv_growth_matches_mechanism", "accuracy_matches_lmms_eval"]


class InvariantRule(_Strict):
    check: InvariantName
    model: str = "*"


class Thresholds(_Strict):
    version: Literal[1] = 1
    absolute: list[AbsoluteRule] = Field(default_factory=list)
    accuracy_drop: list[AccuracyDropRule] = Field(default_factory=list)
    efficiency_ratio: list[EfficiencyRatioRule] = Field(default_factory=list)
    invariants: list[InvariantRule] = Field(default_factory=list)
    other_hardware: Literal["refuse", "skip"] = Field(
        "refuse", description="efficiency ratios against a baseline from another machine or environment: 'refuse' "
                              "(invalid, exit 2) or 'skip' (not judged, the reason printed; accuracy still is)")
