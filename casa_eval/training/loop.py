"""Training zoo mechanisms under identical conditions.

For one seed, every mechanism starts from the same backbone and vision weights (the zoo builds them from
the seed before the mechanism's own modules), sees the same batches in the same order (drawn from the seed
and the step number), and gets the same optimiser, schedule, batch and number of steps. On CPU with a fixed
thread count the same command gives bitwise the same loss curves and weights.

Resumable: a state (weights, optimiser, schedule, losses) is saved every `save_every` steps; Ctrl-C finishes
the current step, saves, and stops (a second Ctrl-C stops at once, from the last saved state). Data parallel:
under `accelerate launch` each process takes a contiguous share of every global batch and gradients are
summed across processes, so the loss curve is the one process's curve at the same global batch.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from casa_eval.fusion import FusionConfig, FusionModel, save_checkpoint
from casa_eval.fusion.mechanisms import short_name
from casa_eval.models.conversation import PromptFormat
from casa_eval.training.batches import collate, shard
from casa_eval.training.data import FolderData, LabData
from casa_eval.training.record import TrainingRecord, load_record
from casa_eval.training.settings import TrainSettings

SETTINGS_FILE = "train_settings.json"
STATE_FILE = "train_state.pt"


class TrainReporter(Protocol):
    def started(self, label: str, total: int, done: int) -> None: ...
    def step(self, label: str, step: int, loss: float, examples_per_s: float) -> None: ...
    def finished(self, label: str, record: TrainingRecord) -> None: ...


class SilentTrainReporter:
    def started(self, label: str, total: int, done: int) -> None:
        pass

    def step(self, label: str, step: int, loss: float, examples_per_s: float) -> None:
        pass

    def finished(self, label: str, record: TrainingRecord) -> None:
        pass


def lab_name(mechanism: str) -> str:
    """The model name a trained mechanism is evaluated under: `casa_shared` -> `lab-casa-shared`."""
    return "lab-" + short_name(mechanism)


def model_dir(root: Path, seed: int, mechanism: str) -> Path:
    return root / f"seed{seed}" / lab_name(mechanism)


def build_model(settings: TrainSettings, mechanism: str, seed: int) -> FusionModel:
    """The step-0 model: shared weights from `seed`, the mechanism's own modules after them."""
    config = FusionConfig.model_validate({**settings.model, "mechanism": mechanism, "seed": seed})
    model = FusionModel(config)
    if "backbone" in settings.freeze:
        model.backbone.requires_grad_(False)
    if "vision" in settings.freeze:
        model.vision.encoder.requires_grad_(False)
    return model.to(settings.device).train()


def train(settings: TrainSettings, root: Path, *, reporter: TrainReporter | None = None,
          ) -> list[TrainingRecord]:
    """Train every mechanism for every seed into `root/seed<k>/lab-<mechanism>/` (finished ones are skipped,
    interrupted ones continue from their last state). Raises KeyboardInterrupt after saving on Ctrl-C."""
    reporter = reporter or SilentTrainReporter()
    records = []
    for seed in settings.seeds:
        data = FolderData(settings.data, seed) if settings.data is not None else LabData(settings.tasks, seed)
        for mechanism in settings.mechanisms:
            records.append(train_model(settings, mechanism, seed, model_dir(root, seed, mechanism), data,
                                       reporter=reporter))
    return records


def train_model(settings: TrainSettings, mechanism: str, seed: int, directory: Path, data: LabData | FolderData,
                *, reporter: TrainReporter) -> TrainingRecord:
    done = load_record(directory)
    if done is not None and done.state == "complete":
        return done
    group = _ProcessGroup.current()
    with _deterministic(settings.threads):
        model = build_model(settings, mechanism, seed)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, betas=settings.betas,
                                      weight_decay=settings.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings))
        state = _load_state(directory, model, optimizer, schedule)
        losses, wall = state["losses"], state["wall_seconds"]
        started = state.get("started_utc") or datetime.now(UTC)
        fmt = PromptFormat(**model.config.prompt.model_dump())
        label = f"{lab_name(mechanism)} seed {seed}"
        reporter.started(label, settings.steps, len(losses))
        clock = time.perf_counter()

        def save(state_name: str) -> TrainingRecord:
            nonlocal clock, wall
            wall += time.perf_counter() - clock
            clock = time.perf_counter()
            record = _record(settings, model, mechanism, seed, losses, wall, started, state_name, group.world)
            if group.rank == 0:
                directory.mkdir(parents=True, exist_ok=True)
                if state_name == "complete":
                    save_checkpoint(model, directory)
                    (directory / STATE_FILE).unlink(missing_ok=True)
                else:
                    _save_state(directory, model, optimizer, schedule, losses, wall, started)
                record.save(directory)
            return record

        with _stop_between_steps() as stop:
            for step in range(len(losses), settings.steps):
                if group.any(stop.requested):
                    save("interrupted")
                    raise KeyboardInterrupt
                began = time.perf_counter()
                loss = _step(model, params, optimizer, schedule, data.batch(step, settings.batch_size), fmt,
                             settings, group)
                losses.append(loss)
                if (step + 1) % settings.save_every == 0 and step + 1 < settings.steps:
                    save("interrupted")
                reporter.step(label, step + 1, loss, settings.batch_size / max(time.perf_counter() - began, 1e-9))
        record = save("complete")
    reporter.finished(label, record)
    return record


def _step(model: FusionModel, params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
          schedule: Any, examples: list[Any], fmt: PromptFormat, settings: TrainSettings,
          group: _ProcessGroup) -> float:
    """One optimiser step on a global batch; returns its mean loss over every supervised token."""
    batch = collate(shard(examples, group.rank, group.world), model.tokenizer, fmt, model.config.vision.image_size)
    total_targets = group.sum(float(batch.targets))
    out = model(batch.segments, labels=batch.labels, return_logits=False)
    assert out.loss is not None
    loss_sum = out.loss * batch.targets
    (loss_sum / total_targets).backward()  # summed over processes below: the mean over the global batch
    group.sum_gradients(params)
    torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()
    return group.sum(float(loss_sum.detach())) / total_targets


def _schedule(settings: TrainSettings) -> Any:
    """Linear warm-up, then a cosine from the learning rate down to `min_lr_ratio` of it."""
    warm, total, floor = settings.warmup_steps, settings.steps, settings.min_lr_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


@functools.lru_cache(maxsize=4)
def _provenance(device: str) -> tuple[Any, Any]:
    """The code revision and environment, read once per process (git and hardware probes take a while)."""
    from casa_eval.results.provenance import code_revision, environment

    return code_revision(), environment(device)


def _record(settings: TrainSettings, model: FusionModel, mechanism: str, seed: int, losses: list[float],
            wall: float, started: datetime, state: str, world: int) -> TrainingRecord:
    code, env = _provenance(settings.device)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    data = str(settings.data) if settings.data is not None else ",".join(f"{t}:{w:g}"
                                                                        for t, w in settings.tasks.items())
    return TrainingRecord(
        name=lab_name(mechanism), mechanism=mechanism, seed=seed, state=state, steps=len(losses),
        steps_planned=settings.steps, batch_size=settings.batch_size, examples_seen=len(losses) * settings.batch_size,
        loss=[round(x, 6) for x in losses], wall_seconds=round(wall, 3), trained_parameters=trained,
        frozen_parameters=sum(p.numel() for p in model.parameters()) - trained,
        added_parameters=model.added_parameters(), threads=torch.get_num_threads(), world_size=world, data=data,
        settings=settings.model_dump(mode="json"), config=model.config.model_dump(mode="json"),
        code=code, environment=env, started_utc=started,
        finished_utc=datetime.now(UTC) if state == "complete" else None)


def _save_state(directory: Path, model: FusionModel, optimizer: Any, schedule: Any, losses: list[float],
                wall: float, started: datetime) -> None:
    tmp = directory / (STATE_FILE + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "losses": losses, "wall_seconds": wall, "started_utc": started.isoformat()}, tmp)
    tmp.replace(directory / STATE_FILE)


def _load_state(directory: Path, model: FusionModel, optimizer: Any, schedule: Any) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.is_file():
        return {"losses": [], "wall_seconds": 0.0}
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return {"losses": list(state["losses"]), "wall_seconds": float(state["wall_seconds"]),
            "started_utc": datetime.fromisoformat(state["started_utc"])}


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """A fixed thread count and deterministic kernels for the duration of a training run."""
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


@dataclass
class _StopRequest:
    requested: bool = False


@contextlib.contextmanager
def _stop_between_steps() -> Iterator[_StopRequest]:
    """The first Ctrl-C asks the loop to stop after the current step; a second one interrupts at once."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


class _ProcessGroup:
    """This process's place in a data-parallel launch (`accelerate launch`), or a group of one."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    @classmethod
    def current(cls) -> _ProcessGroup:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(0, 1)
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes)

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        return self.sum(1.0 if flag else 0.0) > 0

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:  # unused this step here (e.g. no image in the batch): contribute zeros
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
