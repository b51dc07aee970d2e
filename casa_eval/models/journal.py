"""An append-only record of finished generations, so an interrupted run resumes without recomputing.

Each line is one sample's prediction, keyed by everything that determines it: the model fingerprint
(config + weights), the task, the document, the exact prompt and the generation settings. A line is
flushed and fsynced as soon as its batch finishes. A torn last line (a crash mid-write) is cut off when the
journal opens, so the next append starts on a line of its own instead of joining the fragment.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from casa_eval.results.append_log import AppendLog


def prediction_key(fingerprint: str, task: str, doc_id: int, prompt: str, gen_kwargs: dict[str, Any]) -> str:
    payload = json.dumps([fingerprint, task, doc_id, prompt, gen_kwargs], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class PredictionJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = AppendLog(path)
        self._records = {r["key"]: r for r in self._log.read() if "key" in r}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def append(self, records: list[dict[str, Any]]) -> None:
        self._log.append(records)
        self._records.update((r["key"], r) for r in records)
