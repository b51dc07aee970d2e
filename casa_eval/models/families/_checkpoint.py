"""Reading and writing family checkpoints with transformers' own `from_pretrained` / `save_pretrained`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from casa_eval.fusion.backbone import TORCH_DTYPES
from casa_eval.models.families._compat import DTYPE_KWARG, no_progress_bars


def load_pretrained(model_class: Any, path: str | Path, *, device: torch.device, dtype: str | None) -> Any:
    """`model_class.from_pretrained(path)` in eval mode on `device`; `dtype` None keeps the checkpoint's dtype.

    Raises ValueError for a dtype other than float32, bfloat16 and float16.
    """
    if dtype is not None and dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(TORCH_DTYPES)}")
    torch_dtype: Any = TORCH_DTYPES[dtype] if dtype is not None else "auto"
    with no_progress_bars():
        model = model_class.from_pretrained(str(path), **{DTYPE_KWARG: torch_dtype})
    return model.to(device).eval()


def load_family(family_class: Any, hf_class_name: str, family: str, path: str | Path, *, device: torch.device,
                dtype: str | None, name_suffix: str = "", **options: Any) -> Any:
    """`family_class` around transformers' `hf_class_name` loaded from `path`, with the tokenizer and image
    processor saved beside it; `options` go to `family_class`."""
    import transformers

    hf_model = load_pretrained(getattr(transformers, hf_class_name), path, device=device, dtype=dtype)
    tokenizer, image_processor = load_processors(path)
    return family_class(hf_model, tokenizer, image_processor, name=checkpoint_name(family, path) + name_suffix,
                        **options)


def load_processors(path: str | Path) -> tuple[Any, Any]:
    """(tokenizer, image processor) saved next to a checkpoint; the tokenizer pads on the left."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    return tokenizer, AutoImageProcessor.from_pretrained(str(path))


def save_checkpoint(out: Path, model: Any, tokenizer: Any, image_processor: Any) -> Path:
    """`save_pretrained` of the model, tokenizer and image processor into `out` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    with no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


def token_id(tokenizer: Any, token: str) -> int:
    """The id of one token. Raises ValueError when the tokenizer does not know it."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int) or found == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no token {token!r}")
    return found


def checkpoint_name(family: str, path: str | Path) -> str:
    """A model name for records: the family and the checkpoint directory, e.g. `llava-tiny` for `.../tiny`."""
    return f"{family.replace('_', '-')}-{Path(path).resolve().name}"
