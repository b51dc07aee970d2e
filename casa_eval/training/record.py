"""The training record: what `casa-eval train` did for one mechanism and seed, stored beside its checkpoint
(`training_record.json`) and carried by the results document and the report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from casa_eval.results.schema import CodeRevision, Environment

RECORD_FILE = "training_record.json"


class TrainingRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = "1.0"
    name: str = Field(description="the model name the checkpoint is evaluated under, e.g. lab-casa")
    mechanism: str
    seed: int
    state: str = Field(description="complete | interrupted")
    steps: int = Field(description="optimiser steps taken")
    steps_planned: int
    batch_size: int = Field(description="examples per step (global batch)")
    examples_seen: int
    loss: list[float] = Field(description="training loss (mean cross-entropy on answer tokens) per step")
    wall_seconds: float = Field(description="training time, summed over resumed segments")
    trained_parameters: int
    frozen_parameters: int
    added_parameters: int = Field(description="parameters the mechanism adds to the shared backbone and vision")
    threads: int
    world_size: int = Field(description="data-parallel processes")
    data: str = Field(description="the lab tasks trained on, or the dataset folder")
    settings: dict[str, Any] = Field(description="the TrainSettings of the run")
    config: dict[str, Any] = Field(description="the model's FusionConfig")
    code: CodeRevision
    environment: Environment
    started_utc: datetime
    finished_utc: datetime | None = None

    def save(self, directory: Path) -> Path:
        path = directory / RECORD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=1) + "\n")
        tmp.replace(path)
        return path


def load_record(directory: Path) -> TrainingRecord | None:
    """The training record in `directory` (None if there is none); a damaged one is one line naming it."""
    from casa_eval.config import read_json, validate_data

    path = directory / RECORD_FILE
    return validate_data(TrainingRecord, read_json(path, "training record"), str(path)) if path.is_file() else None
