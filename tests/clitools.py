"""Helpers for running the real `casa-eval` command in a subprocess, offline, with a private data cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def cli_env(cache: Path, columns: int = 80) -> dict[str, str]:
    """The environment of a CLI run in a test: offline, a private cache, no terminal, `columns` wide (80, the
    narrowest a user has, unless a test asks otherwise)."""
    env = dict(os.environ)
    env.update(CASA_EVAL_CACHE=str(cache), CASA_EVAL_DATA_CACHE=str(cache / "synthetic"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_HOME=str(cache / "hf-home"), COLUMNS=str(columns))
    return env


def casa_eval(*args: str, cache: Path, cwd: Path | None = None, timeout: int = 600, columns: int = 80,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casa_eval", *args], capture_output=True, text=True,
                          env=cli_env(cache, columns), cwd=cwd or REPO, timeout=timeout, stdin=subprocess.DEVNULL)


def write_toy_task(directory: Path, docs: int = 12, name: str = "toy_vqa",
                   pause: tuple[Path, int, Path] | None = None) -> Path:
    """A tiny local lmms-eval task (JSON lines + PNGs) for fast pipeline tests.

    `pause = (journal, lines, ready)`: the first time `journal` holds `lines` lines, the task's image hook
    creates the file `ready` and blocks until the process is interrupted, so a test interrupts a run at a point
    it chose (not at a moment a timer guessed). Once `ready` exists the hook never blocks again."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(docs):
        image = Image.new("RGB", (96, 96), "white")
        ImageDraw.Draw(image).text((10, 40), f"N{i}", fill="black")
        image.save(folder / f"img{i}.png")
        rows.append({"question": "What is written?", "answers": [f"N{i}"], "image_path": str(folder / f"img{i}.png")})
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hook = ""
    if pause is not None:
        journal, lines, ready = pause
        hook = (f"    journal, ready = Path({str(journal)!r}), Path({str(ready)!r})\n"
                "    if not ready.exists() and journal.exists() and \\\n"
                f"            len(journal.read_text().splitlines()) >= {lines}:\n"
                "        ready.touch()\n"
                "        threading.Event().wait()  # until SIGINT\n")
    (folder / "utils.py").write_text("import threading\nfrom pathlib import Path\n\nfrom PIL import Image\n\n\n"
                                     f"def doc_to_visual(doc):\n{hook}"
                                     "    return [Image.open(doc['image_path']).convert('RGB')]\n")
    (folder / f"{name}.yaml").write_text(f"""# toy task for tests
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: docs.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function lmms_eval.tasks.docvqa.utils.docvqa_doc_to_text
doc_to_target: answers
generation_kwargs: {{max_new_tokens: 8, temperature: 0, do_sample: false}}
lmms_eval_specific_kwargs: {{default: {{pre_prompt: "", post_prompt: " Answer briefly."}}}}
metric_list:
  - {{metric: anls, aggregation: mean, higher_is_better: true}}
metadata: {{version: 0.1}}
""")
    return directory
