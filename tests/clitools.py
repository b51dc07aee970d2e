"""Helpers for running the real `casa-eval` command in a subprocess, offline, with a private data cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def cli_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CASA_EVAL_CACHE=str(cache), CASA_EVAL_DATA_CACHE=str(cache / "synthetic"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_HOME=str(cache / "hf-home"), COLUMNS="200")
    return env


def casa_eval(*args: str, cache: Path, cwd: Path | None = None, timeout: int = 600,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casa_eval", *args], capture_output=True, text=True,
                          env=cli_env(cache), cwd=cwd or REPO, timeout=timeout)


def write_toy_task(directory: Path, docs: int = 12, name: str = "toy_vqa") -> Path:
    """A tiny local lmms-eval task (JSON lines + PNGs) for fast pipeline tests."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(docs):
        image = Image.new("RGB", (96, 96), "white")
        ImageDraw.Draw(image).text((10, 40), f"N{i}", fill="black")
        image.save(folder / f"img{i}.png")
        rows.append({"question": "What is written?", "answers": [f"N{i}"], "image_path": str(folder / f"img{i}.png")})
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "utils.py").write_text("from PIL import Image\n\n\ndef doc_to_visual(doc):\n"
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
