"""The fusion lab's training: identical conditions across mechanisms, bitwise determinism, resumption after
Ctrl-C without losing a finished step, data-parallel training equal to one process at the same global batch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from casa_eval.fusion.mechanisms import BUILTIN
from casa_eval.training import TrainSettings, load_record, model_dir, train
from casa_eval.training.loop import SilentTrainReporter, build_model
from tests.clitools import REPO, cli_env

SMALL = {"steps": 20, "batch_size": 4, "save_every": 5, "threads": 1}


def _shared(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Backbone and vision weights, named as in a plain backbone (fusion wrappers and modules left out)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if not name.startswith(("backbone.", "vision.")) or ".fusion." in name:
            continue
        out[name.replace(".layer.", ".")] = tensor
    return out


def test_every_mechanism_starts_from_the_same_shared_weights() -> None:
    settings = TrainSettings(**SMALL)
    reference = _shared(build_model(settings, "text_only", seed=3))
    for mechanism in BUILTIN:
        shared = _shared(build_model(settings, mechanism, seed=3))
        assert shared.keys() == reference.keys(), mechanism
        assert all(torch.equal(shared[k], reference[k]) for k in reference), mechanism
    other_seed = _shared(build_model(settings, "casa", seed=4))
    assert not all(torch.equal(other_seed[k], reference[k]) for k in reference)


def test_the_same_command_twice_gives_identical_curves_and_weights(tmp_path: Path) -> None:
    settings = TrainSettings(mechanisms=["casa", "insertion"], **SMALL)
    first, second = train(settings, tmp_path / "a"), train(settings, tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.loss == b.loss and len(a.loss) == SMALL["steps"]
        wa = load_file(str(model_dir(tmp_path / "a", 0, a.mechanism) / "model.safetensors"))
        wb = load_file(str(model_dir(tmp_path / "b", 0, b.mechanism) / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the two mechanisms saw the same data but are different models
    assert first[0].loss != first[1].loss
    assert first[0].trained_parameters > first[1].trained_parameters  # CASA adds its layers' projections


class _CtrlC(SilentTrainReporter):
    """Presses Ctrl-C once, while step `at` is being reported (the loop finishes that step and stops)."""

    def __init__(self, at: int) -> None:
        self.at, self.pressed = at, False

    def step(self, label: str, step: int, loss: float, examples_per_s: float) -> None:
        if step == self.at and not self.pressed:
            self.pressed = True
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_keeps_every_finished_step_and_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    settings = TrainSettings(mechanisms=["register_cross_attention"], **SMALL)
    with pytest.raises(KeyboardInterrupt):
        train(settings, tmp_path / "cut", reporter=_CtrlC(at=7))
    directory = model_dir(tmp_path / "cut", 0, "register_cross_attention")
    interrupted = load_record(directory)
    assert interrupted is not None and interrupted.state == "interrupted" and interrupted.steps == 7
    resumed = train(settings, tmp_path / "cut")[0]
    whole = train(settings, tmp_path / "whole")[0]
    assert resumed.state == "complete" and resumed.loss == whole.loss
    assert resumed.loss[:7] == interrupted.loss
    a = load_file(str(directory / "model.safetensors"))
    b = load_file(str(model_dir(tmp_path / "whole", 0, "register_cross_attention") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (directory / "train_state.pt").exists()


@pytest.mark.slow
def test_two_processes_under_accelerate_give_the_one_process_curve(tmp_path: Path, data_cache: Path) -> None:
    args = ["--mechanisms", "casa", "--steps", "6", "--batch-size", "8", "--threads", "1"]
    single = subprocess.run([sys.executable, "-m", "casa_eval", "train", *args, "-o", str(tmp_path / "one")],
                            cwd=REPO, env=cli_env(data_cache), capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert single.returncode == 0, single.stderr[-3000:]
    # `--multi_gpu` on a machine without GPUs starts the processes through torchrun, on the CPU (`--cpu` would
    # start a single process)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "casa_eval", "train",
              *args, "-o", str(tmp_path / "two")]
    double = subprocess.run(launch, cwd=REPO, env=cli_env(data_cache), capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((model_dir(tmp_path / "one", 0, "casa") / "training_record.json").read_text())
    two = json.loads((model_dir(tmp_path / "two", 0, "casa") / "training_record.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-4)
