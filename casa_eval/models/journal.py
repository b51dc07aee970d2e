"""An append-only record of finished generations, so an interrupted run resumes without recomputing.

Each line is one sample's prediction, keyed by everything that determines it: the model fingerprint
(config + weights), the task, the document, the exact prompt and the generation settings. A line is
flushed and fsynced as soon as its batch finishes; a torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def prediction_key(fingerprint: str, task: str, doc_id: int, prompt: str, gen_kwargs: dict[str, Any]) -> str:
    payload = json.dumps([fingerprint, task, doc_id, prompt, gen_kwargs], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class PredictionJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by an interruption; its sample is simply recomputed
                self._records[record["key"]] = record

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
                self._records[record["key"]] = record
            f.flush()
            os.fsync(f.fileno())
