"""An lmms-eval task for a user's dataset folder, written beside the checkpoints trained on it, so that
`casa-eval run --trained OUT` evaluates those checkpoints on the folder's test split like any other task."""

from __future__ import annotations

import re
from pathlib import Path

TASKS_DIR = "tasks"


def folder_task_name(folder: Path) -> str:
    return "data_" + (re.sub(r"[^A-Za-z0-9]+", "_", folder.resolve().name).strip("_").lower() or "folder")


def write_folder_task(folder: Path, out: Path) -> str:
    """Write `out/tasks/<name>/<name>.yaml` (+ its hooks) evaluating `folder/test.jsonl`; return the name."""
    name = folder_task_name(folder)
    directory = out / TASKS_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    test = (folder / "test.jsonl").resolve()
    header = f"# {name}: the test split of the dataset folder {folder.resolve()} (written by casa-eval train)."
    (directory / f"{name}.yaml").write_text(f"""{header}
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: !function utils.doc_to_target
process_results: !function utils.process_results
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  do_sample: false
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
  prompt_profile: lab-completion
  dataset_folder: {folder.resolve()}
""")
    (directory / "utils.py").write_text(f'''"""Hooks of {name}: images are read from the dataset folder."""

from pathlib import Path

from casa_eval.data.lab.folder import make_hooks

doc_to_visual, doc_to_text, doc_to_target, process_results = make_hooks(Path({str(folder.resolve())!r}))
''')
    return name
