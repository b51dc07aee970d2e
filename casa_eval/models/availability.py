"""Can a model be loaded here, now? Checked before anything runs, one line per missing piece."""

from __future__ import annotations

import json
import os
from pathlib import Path

from casa_eval.registry import ModelEntry


def _in_hub_cache(repo: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo, "config.json", revision=revision)
    return isinstance(found, str)


def needs_remote_code(entry: ModelEntry, path: str | None) -> bool:
    """Kyutai's and mPLUG's checkpoints ship their own modeling code; so does any local directory whose
    config maps auto classes to files (`auto_map`)."""
    if path is not None:
        config = Path(path) / "config.json"
        try:
            return "auto_map" in json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            return entry.remote_code
    return entry.remote_code


def model_problems(entry: ModelEntry, path: str | None, *, trust_remote_code: bool) -> list[str]:
    """Why `entry` (from `path`, or its hub repository) cannot be loaded now; empty when it can."""
    name = entry.name
    if entry.kind == "unsupported":
        return [f"model {name} ({entry.source}): casa-eval has no adapter for its remote-code interface yet"]
    if entry.is_zoo:
        if path is not None and not (Path(path) / "casa_eval_config.json").is_file():
            return [f"model {name}: {path} is not a casa-eval zoo checkpoint (no casa_eval_config.json)"]
        return []
    problems = []
    if path is not None:
        if not (Path(path) / "config.json").is_file():
            problems.append(f"model {name}: {path} is not a checkpoint directory (no config.json)")
    elif os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(entry.source, entry.revision):
        problems.append(f"model {name}: the weights of {entry.source} are not available offline — download them "
                        f"where the hub is reachable (huggingface-cli download {entry.source} --local-dir DIR) and "
                        f"pass --models {name}=DIR, or run with --online")
    if needs_remote_code(entry, path) and not trust_remote_code:
        problems.append(f"model {name}: {path or entry.source} runs modeling code shipped with the checkpoint; "
                        "pass --trust-remote-code to allow it")
    return problems
