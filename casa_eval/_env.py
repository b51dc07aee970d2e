"""Process environment for runs: offline-first Hugging Face settings and quiet third-party progress bars.

Must run before `datasets`, `huggingface_hub` or `lmms_eval` are imported (they read these at import):
without `HF_DATASETS_OFFLINE`, even a local parquet task pings S3 (lmms-eval pitfall 6).
"""

from __future__ import annotations

import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def prepare_environment(*, online: bool = False) -> None:
    """Set offline flags (unless `online`) without overriding what the user exported."""
    if not online:
        for name in OFFLINE_VARIABLES:
            os.environ.setdefault(name, "1")
    else:
        for name in OFFLINE_VARIABLES:
            if os.environ.get(name) == "1":
                os.environ.pop(name)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # casa-eval draws its own progress bars
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
