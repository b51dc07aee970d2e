"""Putting a profile into a results document — standalone (`casa-eval profile`) or as the efficiency
section of a `casa-eval run`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casa_eval.profiling.output import write_turns
from casa_eval.profiling.profile_config import ProfileConfig
from casa_eval.profiling.runner import FLOOR, ProfileReporter, profile_models
from casa_eval.registry import resolve_model
from casa_eval.results.schema import RunConfigRecord, RunResults, RunStatus


def profile_model_names(profile: ProfileConfig, models: list[str] | None) -> list[str]:
    """The profile's models (or the given ones), with the text-only floor (`zoo-text-only`) first when they are
    all zoo models and none of them is a text-only model already (the floor is the *same* backbone without
    images; real checkpoints have no such twin)."""
    names = list(models or profile.models)
    entries = [resolve_model(name) for name in names]
    if any(e.mechanism == "text_only" for e in entries) or not all(e.is_zoo for e in entries):
        return names
    return [FLOOR, *names]


def add_profile(results: RunResults, out: Path, profile: ProfileConfig, models: list[str], *,
                reporter: ProfileReporter | None = None, **options: Any) -> RunResults:
    """Run `profile` for `models`, store the efficiency section in `results` and write turns.csv/.parquet."""
    section = profile_models(profile, models, reporter=reporter, **options)
    written = write_turns(section, out)
    results.efficiency = section
    results.config.profile = profile.name
    for path in written:
        results.files[path.stem + path.suffix.replace(".", ":")] = path.name
    return results


def new_profile_results(device: str, seed: int) -> RunResults:
    from casa_eval.evaluation.run import new_run_id
    from casa_eval.results.provenance import code_revision, environment

    config = RunConfigRecord(models=[], tasks=[], limit=None, batch_size=1, device=device, seed=seed,
                             seeds={"torch": seed})
    return RunResults(run_id=new_run_id(), started_utc=datetime.now(UTC), status=RunStatus(state="running"),
                      code=code_revision(), environment=environment(device), config=config)
