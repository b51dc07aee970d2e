"""The hooks lmms-eval task YAMLs call (`tasks/synth_docvqa`, `tasks/synth_chartqa`).

A task's own data file is a one-row JSON-lines file holding a `SyntheticSpec`; `process_docs` swaps that row
for the generated documents. Images stay on disk (an `image_path` column, not a `datasets.Image` feature), so
loading a task neither copies 600 PNGs into Arrow nor decodes them before they are needed.
"""

from __future__ import annotations

from typing import Any

import datasets
from PIL import Image

from casa_eval.data.synthetic.cache import ensure_dataset, load_records
from casa_eval.data.synthetic.spec import SyntheticSpec


def spec_from_dataset(dataset: datasets.Dataset) -> SyntheticSpec:
    """The spec in the task's one-row data file. Raises ValueError if there is not exactly one row, or
    pydantic's ValidationError if the row is not a valid spec."""
    if len(dataset) != 1:
        raise ValueError(f"a synthetic task's data file must hold exactly one spec row, found {len(dataset)}")
    return SyntheticSpec.model_validate(dataset[0])


def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """Replace the spec row by the spec's documents (generated into the cache on first use), one row each,
    in doc_id order, with `image_path` made absolute."""
    dataset_dir = ensure_dataset(spec_from_dataset(dataset))
    records = load_records(dataset_dir)
    for record in records:
        record["image_path"] = str(dataset_dir / record["image_path"])
    return datasets.Dataset.from_list(records)


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    """The document's image as a one-element list of RGB images (what lmms-eval models expect)."""
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]
