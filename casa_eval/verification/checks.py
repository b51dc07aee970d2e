"""Named checks comparing the streaming adapter with the checkpoint's own generation, turn by turn.

* **greedy tokens** — identical ids, stop token included. Where they part, the reference's own scores decide: if
  its choice beat ours by no more than the logit tolerance (a near tie that rounding may flip), the check passes
  and says so; the comparison of logits stops there, and later turns (whose inputs now differ) are skipped.
* **logits** — max |Δ| over every step's scores (up to the first differing token) ≤ atol + rtol × max |reference|,
  with (atol, rtol) by the model's dtype: float32 (1e-4, 1e-4), float16 (1e-2, 1e-2), bfloat16 (5e-2, 5e-2) — a
  few units in the last place of the reference's largest logit at 16-bit.
* **KV bytes == analytic** — the adapter's measured cache against tokens fed × bytes per token (`cache_stats`).
* **side state == analytic** — the same for a cross-attention side state, where the model has one.
* **KV tokens == reference** — after the turn, the adapter's cache holds as many tokens as the reference's (when
  both answers have the same length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from casa_eval.verification.streamed import TurnTrace

TOLERANCES: dict[str, tuple[float, float]] = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2),
                                              "bfloat16": (5e-2, 5e-2)}  # (atol, rtol) on logits

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    status: Status
    detail: str = ""


@dataclass(frozen=True)
class TurnComparison:
    checks: list[Check]
    max_logit_diff: float | None
    same_tokens: bool  # the two sides continue the conversation identically


def tolerance(dtype: str, reference: list[torch.Tensor]) -> float:
    atol, rtol = TOLERANCES.get(dtype, TOLERANCES["float32"])
    scale = max((float(step.abs().max()) for step in reference), default=0.0)
    return atol + rtol * scale


def compare_turn(label: str, ours: TurnTrace, reference: TurnTrace, *, dtype: str, side_state_measured: bool,
                 ) -> TurnComparison:
    checks: list[Check] = []
    tol = tolerance(dtype, reference.logits)
    diverged = next((k for k, (a, b) in enumerate(zip(ours.tokens, reference.tokens, strict=False)) if a != b), None)
    if diverged is None and len(ours.tokens) != len(reference.tokens):
        diverged = min(len(ours.tokens), len(reference.tokens))
    if diverged is None:
        checks.append(Check(f"{label}: greedy tokens", f"{len(ours.tokens)}/{len(ours.tokens)} identical", "pass"))
    else:
        checks.append(_divergence(label, ours, reference, diverged, tol))
    compared = len(ours.tokens) if diverged is None else diverged + 1
    max_diff = None
    if not reference.logits:
        checks.append(Check(f"{label}: logits", "not exposed", "skip",
                            "the checkpoint's generation gave no scores (its logits_processor was never called)"))
    else:
        steps = list(zip(ours.logits[:compared], reference.logits[:compared], strict=False))
        shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in steps if a.shape != b.shape]
        if shapes:
            checks.append(Check(f"{label}: logits", f"shapes {shapes[0][0]} vs {shapes[0][1]}", "fail",
                                "the adapter's logits do not cover the reference's vocabulary"))
        elif steps:
            max_diff = max(float((a - b).abs().max()) for a, b in steps)
            checks.append(Check(f"{label}: logits", f"max |Δ| {max_diff:.2e} (tol {tol:.2e}, {len(steps)} steps)",
                                "pass" if max_diff <= tol else "fail"))
    if ours.stats is not None:
        stats = ours.stats
        same = stats.kv_bytes == stats.analytic_kv_bytes and stats.kv_tokens == stats.analytic_kv_tokens
        checks.append(Check(f"{label}: KV bytes == analytic", f"{stats.kv_bytes:,} vs {stats.analytic_kv_bytes:,} B",
                            "pass" if same else "fail",
                            "" if same else f"tokens {stats.kv_tokens:,} measured, {stats.analytic_kv_tokens:,} fed"))
        if not side_state_measured:
            checks.append(Check(f"{label}: side state == analytic", "not measurable", "skip",
                                "the checkpoint's code does not expose its cross-attention streaming state"))
        elif stats.side_state_bytes or stats.analytic_side_state_bytes:
            same = stats.side_state_bytes == stats.analytic_side_state_bytes
            checks.append(Check(f"{label}: side state == analytic",
                                f"{stats.side_state_bytes:,} vs {stats.analytic_side_state_bytes:,} B",
                                "pass" if same else "fail"))
    if reference.cache_tokens is not None and ours.cache_tokens is not None:
        name, value = f"{label}: KV tokens == reference", f"{ours.cache_tokens:,} vs {reference.cache_tokens:,}"
        if len(ours.tokens) != len(reference.tokens):  # each side's cache holds its own answer
            checks.append(Check(name, value, "skip", "the answers differ in length"))
        else:
            same = ours.cache_tokens == reference.cache_tokens
            checks.append(Check(name, value, "pass" if same else "fail", "" if same else
                                "the adapter's cache holds another number of tokens than the reference's"))
    return TurnComparison(checks, max_diff, same_tokens=diverged is None)


def _divergence(label: str, ours: TurnTrace, reference: TurnTrace, step: int, tol: float) -> Check:
    name, value = f"{label}: greedy tokens", f"differ at token {step + 1}"
    if step >= len(ours.tokens) or step >= len(reference.tokens) or step >= len(reference.logits):
        return Check(name, value, "fail", f"ours {ours.tokens}, reference {reference.tokens}")
    scores = reference.logits[step]
    margin = float(scores[reference.tokens[step]] - scores[ours.tokens[step]])
    if margin <= tol:
        return Check(name, f"{value} (near tie)", "pass",
                     f"the reference preferred {reference.tokens[step]} over our {ours.tokens[step]} by {margin:.2e} "
                     f"≤ {tol:.2e}")
    return Check(name, value, "fail", f"ours {ours.tokens}, reference {reference.tokens} (the reference's choice "
                                      f"led by {margin:.2e} > {tol:.2e})")
