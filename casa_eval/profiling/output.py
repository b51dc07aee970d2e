"""Writing a profile's per-turn records: `turns.csv` (and `turns.parquet` when pyarrow is present)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from casa_eval.results.efficiency import EfficiencySection


def write_turns(section: EfficiencySection, directory: Path) -> list[Path]:
    import pandas as pd

    frame = pd.DataFrame([r.model_dump() for r in section.records])
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / section.turns_file]
    frame.to_csv(written[0], index=False)
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(directory / "turns.parquet")
        frame.to_parquet(written[1], index=False)
    return written
