"""Building the model behind a name: zoo models now, real checkpoints through the same `LoadedModel`."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from casa_eval.errors import UserError
from casa_eval.fusion import FusionModel, load_checkpoint
from casa_eval.fusion.checkpoint import WEIGHTS_FILE, is_checkpoint
from casa_eval.models.availability import model_problems
from casa_eval.models.conversation import PromptFormat
from casa_eval.models.zoo_settings import zoo_config
from casa_eval.registry import ModelEntry, resolve_model


@dataclass
class LoadedModel:
    """A streaming model ready to evaluate or profile, with what the results document records about it."""

    entry: ModelEntry
    model: FusionModel
    prompt_format: PromptFormat
    fingerprint: str  # changes whenever the weights or the config change (keys the resume journal)
    record: dict[str, Any] = field(default_factory=dict)
    weight_bytes: int = 0


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid --device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for CUDA but no CUDA device is available (use --device cpu)")
    return resolved


def load_model(name: str, *, checkpoint: str | Path | None = None, zoo: dict[str, Any] | None = None,
               seed: int | None = None, dtype: str | None = None, attention_backend: str | None = None,
               device: str | None = None, trust_remote_code: bool = False,
               cross_attention_cache: str = "latest") -> LoadedModel:
    """The model behind `name`: a zoo model (random weights from `zoo` dimensions, or `checkpoint`), or a
    real checkpoint from `checkpoint` (a local directory) or the hub, through its adapter."""
    entry = resolve_model(name)
    target = resolve_device(device)
    if not entry.is_zoo:
        problems = model_problems(entry, None if checkpoint is None else str(checkpoint),
                                  trust_remote_code=trust_remote_code)
        if problems:
            raise UserError(problems)
        return _load_real(entry, None if checkpoint is None else str(checkpoint), device=target, dtype=dtype,
                          trust_remote_code=trust_remote_code, cross_attention_cache=cross_attention_cache)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not is_checkpoint(path):
            raise UserError(f"checkpoint {path} is not a casa-eval checkpoint directory (no casa_eval_config.json)")
        overrides = {k: v for k, v in {"dtype": dtype, "attention_backend": attention_backend}.items() if v}
        model = load_checkpoint(path, device=target, overrides=overrides)
        if model.config.mechanism != entry.mechanism:
            raise UserError(f"checkpoint {path} holds a {model.config.mechanism} model, not {entry.mechanism}")
        weights = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
        source = str(path.resolve())
        training = _training_record(path)
    else:
        config = zoo_config(entry, zoo, seed=seed, dtype=dtype, attention_backend=attention_backend)
        # On a GPU the random weights are drawn there: a paper-scale model initialises in seconds instead of
        # a minute of CPU time, from the same seed for every mechanism.
        with torch.device(target) if target.type == "cuda" else contextlib.nullcontext():
            model = FusionModel(config)
        model.to(target)
        weights, source, training = "random", "zoo (random weights)", None
    config_json = model.config.model_dump_json()
    fingerprint = hashlib.sha256(f"{entry.name}|{config_json}|{weights}".encode()).hexdigest()[:16]
    record = {
        "name": entry.name,
        "mechanism": entry.mechanism,
        "source": source,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "weights_sha256": None if weights == "random" else weights,
        "dtype": model.config.dtype,
        "attention_backend": model.attention_backend(),
        "backbone_attention": model.backbone_attention(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "added_parameters": model.added_parameters(),
        "image_tokens": model.num_image_tokens,
        "kv_bytes_per_token": _kv_bytes_per_token(model),
        "cache_tokens_per_image": model.mechanism.inserted_tokens(model.num_image_tokens),
        "config": json.loads(config_json),
        "training": training,
    }
    return LoadedModel(entry=entry, model=model, prompt_format=PromptFormat(**model.config.prompt.model_dump()),
                       fingerprint=fingerprint,
                       record=record, weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()))


def _training_record(directory: Path) -> dict[str, Any] | None:
    """The checkpoint's training record without what the model record already holds (its config)."""
    from casa_eval.training.record import load_record

    record = load_record(directory)  # a damaged record is one line naming it
    if record is None:
        return None
    return record.model_dump(mode="json", exclude={"config"})


def _load_real(entry: ModelEntry, path: str | None, *, device: torch.device, dtype: str | None,
               trust_remote_code: bool, cross_attention_cache: str) -> LoadedModel:
    source = path or entry.source
    model: Any
    if entry.kind == "kyutai":
        from casa_eval.models.kyutai import load_kyutai_model

        model = load_kyutai_model(source, device=device, dtype=dtype, revision=entry.revision)
    else:
        from casa_eval.models.families import detect_family, load_family_model

        found = detect_family(source) if path is not None else entry.family
        if found != entry.family:
            raise UserError(f"model {entry.name}: {source} holds a {found or 'unknown'} checkpoint, not "
                            f"{entry.family}")
        model = load_family_model(source, device=device, dtype=dtype, cross_attention_cache=cross_attention_cache)
    weights = weights_digest(Path(path)) if path is not None else f"hub:{entry.source}@{entry.revision or 'main'}"
    from casa_eval.verification.store import checkpoint_verification, local_checkpoint

    directory = local_checkpoint(source, entry.revision)
    verification = None if directory is None else checkpoint_verification(
        weights if path is not None else weights_digest(directory), device.type)
    config_json = json.dumps(model.config, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(f"{entry.name}|{source}|{config_json}|{weights}".encode()).hexdigest()[:16]
    record = {
        "name": entry.name, "mechanism": model.mechanism, "source": source, "checkpoint": path,
        "weights_sha256": weights if path is not None else None, "dtype": model.dtype,
        "attention_backend": str(model.config.get("attn_implementation", "sdpa")),
        "parameters": model.parameters, "added_parameters": None, "image_tokens": model.image_tokens_per_image,
        "kv_bytes_per_token": model.kv_bytes_per_token, "cache_tokens_per_image": model.cache_tokens_per_image,
        "config": json.loads(config_json),
        "verification": None if verification is None else verification.model_dump(mode="json"),
    }
    dtype_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}.get(model.dtype, 4)
    return LoadedModel(entry=entry, model=model, prompt_format=model.prompt_format, fingerprint=fingerprint,
                       record=record, weight_bytes=model.parameters * dtype_bytes)


def weights_digest(directory: Path, probe: int = 4 << 20) -> str:
    """A content digest of a checkpoint's weight files: names, sizes, and the first and last `probe` bytes of
    each (hashing every byte of a multi-gigabyte checkpoint would take longer than loading it)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth")):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as f:
            digest.update(f.read(probe))
            if size > probe:
                f.seek(max(probe, size - probe))
                digest.update(f.read(probe))
    return digest.hexdigest()


def _kv_bytes_per_token(model: FusionModel) -> int:
    spec = model.config.backbone
    dtype_bytes = torch.empty(0, dtype=model.dtype).element_size()
    return 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim * dtype_bytes
