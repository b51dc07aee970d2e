"""Calling lmms-eval as a library, with its known traps handled (research/lmms_eval.md §5):

* offline variables are set before the first import (`casa_eval._env`);
* `import lmms_eval.models` resets loguru to a WARNING handler on stdout — we re-route it to stderr at
  ERROR (and to the run's log file) right after importing;
* `simple_evaluate`'s `datetime_str` default is frozen at import time — we always pass one;
* tasks are passed by name through a `TaskManager` on casa-eval's include path (task dicts break chat
  models and get mutated), with the 1,900 built-in YAMLs skipped (2.4 s saved per run);
* `cli_args` with `process_with_media=False` keeps submission files out of the working directory and avoids
  decoding every image a second time in post-processing;
* its "Postprocessing" tqdm bar passes `disable=` explicitly, ignoring `TQDM_DISABLE`; casa-eval draws its
  own progress, so that bar is silenced.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casa_eval._paths import tasks_dir


@dataclass
class TaskOutcome:
    results: dict[str, Any]  # lmms-eval's aggregate dict for the task
    config: dict[str, Any]  # the resolved task config
    samples: list[dict[str, Any]]
    num_docs: int | None  # documents in the task before `limit`


_LOADED = False


def load_lmms_eval(log_file: Path | None = None) -> None:
    """Import lmms-eval once and put its logging where it belongs."""
    global _LOADED
    if _LOADED:
        return
    import lmms_eval.evaluator  # imports lmms_eval.models, which resets loguru
    from loguru import logger
    from tqdm import tqdm

    def quiet_tqdm(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm(*args, **kwargs)

    lmms_eval.evaluator.tqdm = quiet_tqdm

    logger.remove()
    logger.add(sys.stderr, level="ERROR", format="lmms-eval {level}: {message}")
    if log_file is not None:
        logger.add(str(log_file), level="INFO")
    _LOADED = True


def task_manager(extra_paths: list[Path] | None = None) -> Any:
    from lmms_eval.tasks import TaskManager

    paths = [str(tasks_dir()), *(str(p) for p in extra_paths or [])]
    return TaskManager("ERROR", include_path=paths, include_defaults=False)


def evaluate_task(adapter: Any, task: str, manager: Any, *, limit: int | None, batch_size: int, seed: int,
                  output_path: Path) -> TaskOutcome:
    """One task on one (already loaded) model; lmms-eval scores it with the task's own metrics."""
    from lmms_eval.evaluator import simple_evaluate

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    results = simple_evaluate(
        model=adapter, tasks=[task], task_manager=manager, limit=limit, batch_size=batch_size,
        log_samples=True, bootstrap_iters=0, datetime_str=stamp, verbosity="ERROR",
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        cli_args=argparse.Namespace(output_path=str(output_path), process_with_media=False),
    )
    if results is None:  # ranks > 0 of a distributed launch get nothing back
        raise RuntimeError("lmms-eval returned no results (not rank 0?)")
    n_samples = results.get("n-samples", {}).get(task, {})
    return TaskOutcome(results=results["results"].get(task, {}), config=results["configs"].get(task, {}),
                       samples=results.get("samples", {}).get(task, []), num_docs=n_samples.get("original"))
