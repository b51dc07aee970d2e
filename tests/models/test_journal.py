"""The prediction journal survives a crash mid-write: the torn line is cut, and what comes next is kept."""

import json
from pathlib import Path

from casa_eval.models.journal import PredictionJournal


def _record(key: str) -> dict[str, str]:
    return {"key": key, "text": f"answer {key}"}


def test_an_append_after_a_torn_line_is_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    PredictionJournal(path).append([_record("a"), _record("b")])
    with path.open("a") as f:
        f.write(json.dumps(_record("c"))[:17])  # the process died while writing "c"
    journal = PredictionJournal(path)
    assert len(journal) == 2 and journal.get("c") is None  # "c" is recomputed
    journal.append([_record("c"), _record("d")])
    reopened = PredictionJournal(path)
    assert len(reopened) == 4 and reopened.get("c") == _record("c") and reopened.get("d") == _record("d")
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_journal_torn_in_its_first_line_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"key": "a", "te')
    journal = PredictionJournal(path)
    assert len(journal) == 0 and path.read_text() == ""
    journal.append([_record("a")])
    assert PredictionJournal(path).get("a") == _record("a")
