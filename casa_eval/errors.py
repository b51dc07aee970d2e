"""Errors a user can cause: the CLI prints their message on one line and exits with their code."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem with what the user asked for (exit code 2 unless stated). Several independent problems
    (e.g. every missing model, dataset and flag of a run) travel together, one line each."""

    def __init__(self, message: str | list[str], exit_code: int = 2) -> None:
        self.messages = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.messages))
        self.exit_code = exit_code


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    names = ", ".join(sorted(valid)) or "(none found)"
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return UserError(f"unknown {kind} {name!r}; valid {plural}: {names}")
