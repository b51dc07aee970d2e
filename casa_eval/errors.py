"""Errors a user can cause: the CLI prints their message on one line and exits with their code."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem with what the user asked for (exit code 2 unless stated)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    names = ", ".join(sorted(valid)) or "(none found)"
    return UserError(f"unknown {kind} {name!r}; valid {kind}s: {names}")
