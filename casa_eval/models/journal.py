"""An append-only record of finished generations, so an interrupted run resumes without recomputing.

Each line is one sample's prediction, keyed by everything that determines it: the model fingerprint
(config + weights), the task, the document, the exact prompt and the generation settings. A line is
flushed and fsynced as soon as its batch finishes. A torn last line (a crash mid-write) is cut off when the
journal opens, so the next append starts on a line of its own instead of joining the fragment.
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
            self._repair()
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a damaged line; its sample is simply recomputed
                self._records[record["key"]] = record

    def _repair(self) -> None:
        """Cut a torn last line (no newline after it): its sample is recomputed, and what is appended next
        stays a line of its own."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

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
