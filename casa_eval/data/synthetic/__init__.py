"""Offline, deterministic DocVQA-like forms and ChartQA-like bar charts for lmms-eval.

A `SyntheticSpec` names a set (kind, seed, size, difficulty); `ensure_dataset` renders it into a verified
on-disk cache on first use and repairs it when damaged; `casa_eval.data.synthetic.lmms` holds the hooks the
task YAMLs in `tasks/synth_docvqa` and `tasks/synth_chartqa` call.
"""

from casa_eval.data.synthetic.cache import SyncReport, default_root, ensure_dataset, load_records, sync_dataset
from casa_eval.data.synthetic.spec import GENERATOR_VERSION, SyntheticSpec

__all__ = [
    "GENERATOR_VERSION",
    "SyncReport",
    "SyntheticSpec",
    "default_root",
    "ensure_dataset",
    "load_records",
    "sync_dataset",
]
