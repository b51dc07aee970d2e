"""`verify_model`: every built-in conversation through the checkpoint's own generation and the streaming adapter,
compared check by check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from casa_eval.errors import UserError
from casa_eval.models.adapter import generation_config
from casa_eval.models.loading import LoadedModel
from casa_eval.verification.checks import Check, compare_turn
from casa_eval.verification.inputs import conversations
from casa_eval.verification.streamed import TurnTrace, stream_conversation


@dataclass
class Verification:
    model: str
    dtype: str
    checks: list[Check] = field(default_factory=list)
    max_logit_diff: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def verify_model(loaded: LoadedModel, *, max_new_tokens: int = 8) -> Verification:
    """Compare `loaded` (a real checkpoint) with its own generation on the built-in conversations.

    Raises UserError when the reference itself cannot run (the checkpoint's own generation fails): there is
    nothing to compare with. A failure of the adapter is a failed check, not an exception."""
    model: Any = loaded.model
    config = generation_config({"max_new_tokens": max_new_tokens}, model.tokenizer,
                               getattr(model, "stop_token_ids", None))
    result = Verification(model=loaded.entry.name, dtype=str(loaded.record["dtype"]))
    diffs: list[float] = []
    for conversation in conversations():
        try:
            references = _reference(model, conversation, config)
        except UserError:
            raise
        except Exception as exc:  # the checkpoint's own generation: not ours to report as a disagreement
            raise UserError(f"model {loaded.entry.name}: the checkpoint's own generation failed on the built-in "
                            f"conversation {conversation.name!r}: {type(exc).__name__}: {exc}") from None
        try:
            ours = stream_conversation(loaded, conversation, config)
        except Exception as exc:  # a broken adapter is a disagreement, named like any other
            result.checks.append(Check(f"{conversation.name}: streaming adapter", f"raised {type(exc).__name__}",
                                       "fail", str(exc).splitlines()[0] if str(exc) else ""))
            continue
        same = True
        for turn, (a, b) in enumerate(zip(ours, references, strict=True), start=1):
            label = f"{conversation.name} turn {turn}"
            if not same:
                result.checks.append(Check(f"{label}: compared", "skipped", "skip",
                                           "an earlier answer differed, so this turn's inputs differ"))
                continue
            compared = compare_turn(label, a, b, dtype=result.dtype,
                                    side_state_measured=getattr(model, "side_state_measured", True))
            result.checks += compared.checks
            same = compared.same_tokens
            if compared.max_logit_diff is not None:
                diffs.append(compared.max_logit_diff)
    result.max_logit_diff = max(diffs, default=None)
    return result


def _reference(model: Any, conversation: Any, config: Any) -> list[TurnTrace]:
    from casa_eval.models.kyutai import KyutaiModel

    if isinstance(model, KyutaiModel):
        from casa_eval.verification.kyutai_reference import kyutai_reference

        return kyutai_reference(model, conversation, config)
    from casa_eval.verification.family_reference import family_reference

    return family_reference(model, conversation, config)
