"""Where casa-eval finds its task and profile definitions, and where it caches generated data.

`tasks/` and `profiles/` live at the top of the repository; a wheel carries them as
`casa_eval/_bundled/{tasks,profiles}` (see pyproject's force-include), so both editable and plain installs
find them.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"casa-eval's {name}/ directory is missing from this installation")


def tasks_dir() -> Path:
    """The lmms-eval include path holding casa-eval's task YAMLs."""
    return _data_dir("tasks")


def profiles_dir() -> Path:
    return _data_dir("profiles")


def trained_dir() -> Path:
    """The lab's trained checkpoints shipped inside the package (`seed0/lab-<mechanism>/`)."""
    return _PACKAGE / "trained"


def cache_dir() -> Path:
    """Root of casa-eval's caches (`CASA_EVAL_CACHE`, else ~/.cache/casa-eval)."""
    return Path(os.environ.get("CASA_EVAL_CACHE", Path.home() / ".cache" / "casa-eval"))
