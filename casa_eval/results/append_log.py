"""An append-only JSON-lines file that survives a crash: every record is flushed and fsynced as it is
written, and a torn last line (a crash mid-write) is cut off when the file is opened, so the next record
starts on a line of its own instead of joining the fragment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class AppendLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        """Every whole record, after cutting a torn last line; an unreadable line is skipped (its work is
        simply done again)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        records = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
