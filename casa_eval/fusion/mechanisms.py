"""Which fusion mechanisms exist: the built-in ones, those other packages register, and any given by import path.

A mechanism of your own is a `casa_eval.fusion.Mechanism` subclass (docs/lab.md shows one). Make it known
either through the `casa_eval.mechanisms` entry-point group of your package::

    [project.entry-points."casa_eval.mechanisms"]
    my_gate = "my_package.fusion:MyGate"

or by naming it with its import path, ``my_package.fusion:MyGate``, wherever a mechanism name is taken
(`casa-eval train --mechanisms`, a zoo config). Its models are then `zoo-<name>` / `lab-<name>` like the
built-in ones. Name checks here stay light (no torch); the class is imported when a model is built.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

BUILTIN = ("insertion", "qformer", "cross_attention", "gated_cross_attention", "register_cross_attention", "casa",
           "casa_shared", "text_only")
ENTRY_POINT_GROUP = "casa_eval.mechanisms"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MechanismError(ValueError):
    """A mechanism name that names nothing, or whose class cannot be imported."""


@lru_cache(maxsize=1)
def registered() -> dict[str, str]:
    """Entry-point name -> import path, for mechanisms other packages register."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_mechanisms() -> tuple[str, ...]:
    return (*BUILTIN, *sorted(n for n in registered() if n not in BUILTIN))


def check_mechanism_name(name: str) -> str:
    """`name` if it is a built-in or registered mechanism, or shaped like an import path (`module:Class`)."""
    if name in BUILTIN or name in registered() or _IMPORT_PATH.match(name):
        return name
    raise MechanismError(f"unknown mechanism {name!r}; valid mechanisms: {', '.join(known_mechanisms())}, or an "
                         "import path module:Class")


def short_name(name: str) -> str:
    """The name models are called by: `casa_shared` -> `casa-shared`, `pkg.mod:MyGate` -> `MyGate`."""
    return name.rsplit(":", 1)[-1].replace("_", "-")


def mechanism_class(name: str) -> Any:
    """The `Mechanism` subclass behind `name` (imported on first use)."""
    check_mechanism_name(name)
    from casa_eval.fusion.model import MECHANISM_CLASSES

    if name in MECHANISM_CLASSES:
        return MECHANISM_CLASSES[name]
    path = registered().get(name, name)
    module_name, _, attribute = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # an ImportError, or any error the module raises while importing
        raise MechanismError(f"mechanism {name!r}: cannot import {path}: {type(exc).__name__}: {exc}") from None
    from casa_eval.fusion._mechanism import Mechanism

    if not (isinstance(cls, type) and issubclass(cls, Mechanism)):
        raise MechanismError(f"mechanism {name!r}: {path} is not a casa_eval.fusion.Mechanism subclass")
    return cls
