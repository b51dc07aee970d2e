"""`casa-eval verify`: a real checkpoint's own generation against casa-eval's streaming adapter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from casa_eval.cli.console import console, say, table, warn
from casa_eval.errors import UserError

VERDICT_STYLE = {"pass": "[green]agree[/]", "fail": "[bold red]DISAGREE[/]", "skip": "[dim]skipped[/]"}


def verify(
    model: Annotated[str, typer.Argument(help="A real checkpoint: NAME (from the hub cache) or NAME=DIR, e.g. "
                                         "casa=/models/CASA-Helium1-VL-2B. See `casa-eval list models`.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto (default).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16 (default: as `run` loads it).")
                     ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow checkpoints that ship their own modeling code "
                                                    "(Kyutai's CASA models).")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens generated per turn.")] = 8,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the verdict (every check) as "
                                             "JSON to this file.")] = None,
) -> None:
    """Run built-in images and prompts (one and two turns) through the checkpoint's own generation and through
    casa-eval's streaming adapter; compare greedy tokens, logits and KV bytes. Exit 0 agree, 1 disagree, 2
    cannot run. The verdict is kept for this machine; `run` and `profile` warn about checkpoints without one."""
    from casa_eval._env import prepare_environment

    prepare_environment()
    from casa_eval.registry import resolve_model, split_model_paths

    names, paths = split_model_paths([model])
    name = names[0]
    entry = resolve_model(name)
    if entry.is_zoo:
        raise UserError(f"model {name} is built by casa-eval's zoo; verify compares a real checkpoint with its own "
                        "generation (e.g. casa-eval verify casa=DIR --trust-remote-code)")
    from casa_eval.models.loading import load_model, weights_digest
    from casa_eval.results.provenance import code_revision
    from casa_eval.verification.run import verify_model
    from casa_eval.verification.store import (
        CheckRecord,
        StoredVerdict,
        local_checkpoint,
        machine_fingerprint,
        save_verdict,
    )

    if out is not None:
        from casa_eval.evaluation.preflight import check_writable

        check_writable(out.parent)
    try:
        loaded = load_model(name, checkpoint=paths.get(name), dtype=dtype, device=device,
                            trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except Exception as exc:  # transformers' own loading errors: the checkpoint cannot be run here
        raise UserError(f"model {name}: {paths.get(name) or entry.source} could not be loaded: "
                        f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    directory = local_checkpoint(paths.get(name) or entry.source, entry.revision)
    assert directory is not None  # loading succeeded offline, so the checkpoint is on disk
    with console.status(f"verifying {name}"):
        result = verify_model(loaded, max_new_tokens=max_new_tokens)

    rows = table("check", "model", "value", "verdict", title=f"{name} ({loaded.record['dtype']}) against its own "
                                                           "generation")
    for check in result.checks:
        rows.add_row(escape(check.name), escape(name), escape(check.value), VERDICT_STYLE[check.status])
    console.print(rows)
    for check in result.checks:
        if check.status == "fail":
            say(f"[bold red]FAIL[/] {escape(check.name)}: {escape(check.value)}"
                + (f" — {escape(check.detail)}" if check.detail else ""))
    device_type = loaded.model.device.type
    revision = code_revision()
    verdict = StoredVerdict(
        model=name, checkpoint=str(directory.resolve()), weights_sha256=weights_digest(directory),
        machine=machine_fingerprint(device_type), device=str(loaded.model.device), dtype=result.dtype,
        casa_eval_version=revision.casa_eval_version, git_sha=revision.git_sha,
        verdict="passed" if result.passed else "failed", max_logit_diff=result.max_logit_diff,
        checks=[CheckRecord(name=c.name, value=c.value, status=c.status, detail=c.detail) for c in result.checks],
        verified_utc=datetime.now(UTC))
    stored = save_verdict(verdict)
    if out is not None:
        out.write_text(verdict.model_dump_json(indent=2) + "\n")
    diff = "—" if result.max_logit_diff is None else f"{result.max_logit_diff:.2e}"
    if result.passed:
        say(f"verdict: [green]{escape(name)} agrees with its own generation[/] ({len(result.checks)} checks, max "
            f"|Δlogit| {diff}); recorded in {escape(str(stored))}")
        return
    say(f"verdict: [bold red]{escape(name)} disagrees with its own generation[/] ({len(result.failed)} of "
        f"{len(result.checks)} checks failed: {escape(', '.join(c.name for c in result.failed))}); recorded in "
        f"{escape(str(stored))}")
    raise typer.Exit(1)


def warn_unverified(names: Iterable[str], checkpoints: Mapping[str, str | Path], device: str | None) -> None:
    """One warning line per real checkpoint in `names` whose weights have no passing `casa-eval verify` verdict on
    this machine (zoo and lab models are casa-eval's own and are not verified this way)."""
    from casa_eval.models.loading import resolve_device, weights_digest
    from casa_eval.registry import resolve_model
    from casa_eval.verification.store import find_verdict, local_checkpoint, machine_fingerprint

    machine: str | None = None
    for name in names:
        entry = resolve_model(name)
        directory = None if entry.is_zoo or entry.kind == "unsupported" else \
            local_checkpoint(str(checkpoints.get(name) or entry.source), entry.revision)
        if directory is None:
            continue
        machine = machine or machine_fingerprint(resolve_device(device).type)
        found = find_verdict(weights_digest(directory), machine)
        if found is not None and found.verdict == "passed":
            continue
        flag = " --trust-remote-code" if entry.remote_code or entry.kind == "kyutai" else ""
        why = "has not been verified on this machine" if found is None else \
            f"failed its last verify on this machine ({found.verified_utc:%Y-%m-%d})"
        warn(f"model {name} ({directory}) {why}; check the adapter against the checkpoint's own generation with: "
             f"casa-eval verify {name}={directory}{flag}")
