"""Names a user can type: models, tasks and profiles, with what each one is.

This module is imported by the CLI's `--help` and `list` paths, so it must stay light: no torch, no
transformers, no lmms-eval at import time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from casa_eval._paths import profiles_dir, tasks_dir, trained_dir
from casa_eval.errors import UserError, unknown_name
from casa_eval.fusion.mechanisms import BUILTIN, short_name

MECHANISM_NAMES = ("text_only", "insertion", "qformer", "cross_attention", "gated_cross_attention",
                   "register_cross_attention", "casa", "casa_shared")
assert set(MECHANISM_NAMES) == set(BUILTIN)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    mechanism: str
    source: str  # "zoo" or a Hugging Face repository id
    remote_code: bool = False
    description: str = ""
    # how it is loaded: the zoo, Kyutai's remote-code interface, or a transformers family
    kind: str = "zoo"
    family: str | None = None
    revision: str | None = None

    @property
    def is_zoo(self) -> bool:
        """Built by casa-eval's fusion zoo: random weights (`zoo-*`) or a trained lab checkpoint (`lab-*`)."""
        return self.source in ("zoo", "lab")

    @property
    def base_name(self) -> str:
        """The name without a training-seed suffix: `lab-casa@seed2` -> `lab-casa`."""
        return self.name.split("@", 1)[0]


def zoo_model_name(mechanism: str) -> str:
    return "zoo-" + short_name(mechanism)


def lab_model_name(mechanism: str, seed: int = 0) -> str:
    """A trained lab model's name: seed 0 is plain (`lab-casa`), other seeds carry it (`lab-casa@seed2`)."""
    return "lab-" + short_name(mechanism) + (f"@seed{seed}" if seed else "")


ZOO_MODELS: dict[str, ModelEntry] = {
    zoo_model_name(m): ModelEntry(zoo_model_name(m), m, "zoo",
                                  description=f"{m} on the shared zoo backbone, random weights (or a checkpoint)")
    for m in MECHANISM_NAMES
}

# The lab's trained checkpoints shipped with the package (seed 0; `casa-eval train` makes more).
LAB_MODELS: dict[str, ModelEntry] = {
    lab_model_name(m): ModelEntry(lab_model_name(m), m, "lab", kind="lab",
                                  description=f"{m} trained in the fusion lab (docs/lab.md)")
    for m in MECHANISM_NAMES
}
_TRAINED: dict[str, tuple[ModelEntry, Path]] = {}


def trained_models(directory: Path | None = None) -> dict[str, tuple[ModelEntry, Path]]:
    """Every trained lab checkpoint under `directory` (default: the ones shipped with casa-eval), by model name,
    in mechanism order then seed: `DIR/seed<k>/lab-<mechanism>/` holding a casa_eval_config.json. The names
    found are also resolvable by `resolve_model` from then on."""
    root = directory or trained_dir()
    found = []
    for config in sorted(root.glob("seed*/lab-*/casa_eval_config.json")):
        seed_text = config.parent.parent.name.removeprefix("seed")
        if not seed_text.isdigit():
            continue
        try:
            mechanism = str(json.loads(config.read_text())["mechanism"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{config}: not a readable casa-eval checkpoint config") from None
        seed = int(seed_text)
        name = lab_model_name(mechanism, seed)
        entry = ModelEntry(name, mechanism, "lab", kind="lab", description=f"{mechanism} trained in the fusion lab, "
                                                                            f"seed {seed}")
        order = MECHANISM_NAMES.index(mechanism) if mechanism in MECHANISM_NAMES else len(MECHANISM_NAMES)
        found.append(((order, mechanism, seed), name, entry, config.parent))
    out = {name: (entry, path) for _, name, entry, path in sorted(found, key=lambda row: row[0])}
    _TRAINED.update(out)
    return out

# The casa paper's models (real checkpoints on the Hugging Face hub).
PAPER_MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("casa", "casa", "kyutai/CASA-Helium1-VL-2B", True, "CASA on Helium1-2B", kind="kyutai"),
        ModelEntry("casa-shared", "casa_shared", "kyutai/CASA-Helium1-VL-2B-Shared", True,
                   "CASA sharing the self-attention weights, Helium1-2B", kind="kyutai"),
        ModelEntry("casa-qwen", "casa", "kyutai/CASA-Qwen2_5-VL-3B", True, "CASA on a frozen Qwen2.5-VL-3B",
                   kind="kyutai"),
        ModelEntry("casa-qwen-shared", "casa_shared", "kyutai/CASA-Qwen2_5-VL-3B-Shared", True,
                   "CASA-shared on Qwen2.5-VL-3B", kind="kyutai"),
        ModelEntry("casa-livecc", "casa", "kyutai/CASA-Qwen2_5-VL-3B-LiveCC", True,
                   "CASA-Qwen2.5-VL-3B fine-tuned for live video captioning", kind="kyutai"),
        ModelEntry("insertion", "insertion", "kyutai/Helium1-VL-2B", True, "token insertion baseline, Helium1-2B",
                   kind="kyutai"),
        ModelEntry("insertion-qwen", "insertion", "Qwen/Qwen2.5-VL-3B-Instruct", False,
                   "Qwen2.5-VL-3B (token insertion, M-RoPE)", kind="family", family="qwen2_5_vl"),
        ModelEntry("gated-xattn", "gated_cross_attention", "meta-llama/Llama-3.2-11B-Vision-Instruct", False,
                   "Llama-3.2-Vision (mllama) gated cross-attention", kind="family", family="mllama"),
        ModelEntry("qformer", "qformer", "Salesforce/blip2-opt-2.7b", False, "BLIP-2 Q-Former (OPT-2.7B)",
                   kind="family", family="blip2"),
        ModelEntry("insertion-llava", "insertion", "llava-hf/llava-1.5-7b-hf", False, "LLaVA-1.5 (token insertion)",
                   kind="family", family="llava"),
        ModelEntry("mplug-owl3", "cross_attention", "mPLUG/mPLUG-Owl3-2B-241014", True,
                   "mPLUG-Owl3 2B hyper-attention (cross-attention baseline of Kyutai's table)", kind="unsupported"),
    )
}


def all_models() -> dict[str, ModelEntry]:
    return {**ZOO_MODELS, **LAB_MODELS, **PAPER_MODELS}


def resolve_model(name: str) -> ModelEntry:
    """A model entry by name; unknown names list the valid ones."""
    entry = _TRAINED[name][0] if name in _TRAINED else all_models().get(name)
    if entry is None and name.startswith("zoo-"):  # a mechanism of your own, e.g. zoo-MyGate
        entry = next((ModelEntry(name, m, "zoo") for m in _custom_mechanisms() if zoo_model_name(m) == name), None)
    if entry is None:
        raise unknown_name("model", name, all_models())
    return entry


def _custom_mechanisms() -> list[str]:
    from casa_eval.fusion.mechanisms import registered

    return list(registered())


def split_model_paths(items: list[str]) -> tuple[list[str], dict[str, str]]:
    """`["casa=/models/casa", "zoo-casa"]` -> (names, {name: local path})."""
    names, paths = [], {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if sep and not path.strip():
            raise UserError(f"model {name!r}: empty path after '='")
        names.append(name)
        if sep:
            paths[name] = path.strip()
    return names, paths


def split_names(value: str | list[str] | None) -> list[str]:
    """`"a,b"`, `["a", "b,c"]` -> `["a", "b", "c"]` (empty items dropped, order and duplicates kept once)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        for name in item.split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


# ---------------------------------------------------------------------------------------------- tasks


class _IgnoreTags(yaml.SafeLoader):
    """Reads lmms-eval YAMLs without resolving `!function` tags (listing must not import task code)."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


@dataclass(frozen=True)
class TaskEntry:
    name: str
    path: Path
    description: str
    dataset: str


def read_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML's top level ({} if it is not a mapping); a malformed file is one line naming it."""
    from casa_eval.config import read_yaml

    data = read_yaml(path, loader=_IgnoreTags)
    return data if isinstance(data, dict) else {}


def _leading_comment(path: Path) -> str:
    """The first line of the YAML's header comment, without its `name:` prefix."""
    first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "")
    text = first.lstrip("# ").strip()
    return text.split(": ", 1)[1] if ": " in text else text


def available_tasks(extra: Sequence[Path] = ()) -> dict[str, TaskEntry]:
    """Every task (not group) defined by a YAML under casa-eval's tasks directory and `extra` directories."""
    paths = [p for root in (tasks_dir(), *extra) for p in sorted(Path(root).rglob("*.yaml"))]
    out: dict[str, TaskEntry] = {}
    for path in paths:
        data = read_task_yaml(path)
        name = data.get("task")
        if isinstance(name, str):
            dataset = str(data.get("dataset_path", ""))
            out[name] = TaskEntry(name, path, _leading_comment(path), dataset)
    return out


def resolve_tasks(names: list[str], extra: Sequence[Path] = ()) -> list[TaskEntry]:
    """Task entries by name; the casa paper's benchmark names (`docvqa`, `chartqa`, ...) stand for casa-eval's
    `casa_*` tasks, which reproduce the paper's protocol."""
    tasks = available_tasks(extra)
    resolved = [n if n in tasks else f"casa_{n}" for n in names]
    missing = [n for n, r in zip(names, resolved, strict=True) if r not in tasks]
    if missing:
        raise unknown_name("task", missing[0], tasks)
    return [tasks[n] for n in resolved]


# ---------------------------------------------------------------------------------------------- profiles


def available_profiles() -> dict[str, Path]:
    try:
        root = profiles_dir()
    except FileNotFoundError:
        return {}
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def resolve_profile(name_or_path: str) -> Path:
    """A profile by name (profiles/NAME.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not path.is_file():
            raise UserError(f"profile file {name_or_path} does not exist")
        return path
    profiles = available_profiles()
    if name_or_path not in profiles:
        raise unknown_name("profile", name_or_path, profiles)
    return profiles[name_or_path]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_filename(name: str) -> str:
    return _SAFE_NAME.sub("_", name)
