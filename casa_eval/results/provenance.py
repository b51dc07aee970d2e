"""Where a result came from: the code revision and the machine/library environment."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from casa_eval.results.schema import CodeRevision, Environment, GPUInfo

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def code_revision() -> CodeRevision:
    """casa-eval's version, and the git commit and dirty flag when running from a checkout."""
    sha: str | None = None
    dirty: bool | None = None
    if (_PACKAGE_ROOT / ".git").exists():
        try:
            sha = subprocess.run(["git", "-C", str(_PACKAGE_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip() or None
            status = subprocess.run(["git", "-C", str(_PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10, check=True).stdout
            dirty = bool(status.strip())
        except (OSError, subprocess.SubprocessError):
            sha, dirty = None, None
    return CodeRevision(casa_eval_version=_version("casa-eval") or "unknown", git_sha=sha, git_dirty=dirty)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_inventory() -> list[GPUInfo]:
    """GPUs seen by NVML (empty when there is no NVIDIA driver)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no device: NVML raises its own error types
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            out.append(GPUInfo(index=i, name=name.decode() if isinstance(name, bytes) else name,
                               memory_total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                               driver_version=driver.decode() if isinstance(driver, bytes) else driver,
                               uuid=uuid.decode() if isinstance(uuid, bytes) else uuid))
        return out
    finally:
        pynvml.nvmlShutdown()


def environment(device: str) -> Environment:
    import psutil
    import torch

    gpus = gpu_inventory()
    versions = {name: _version(name) for name in ("torch", "transformers", "lmms-eval", "datasets", "flash-attn")}
    # What must match for two efficiency measurements to be comparable.
    fingerprint_parts = [_cpu_name(), str(os.cpu_count()), device, platform.machine(),
                         *(g.name for g in gpus), *(f"{k}={v}" for k, v in sorted(versions.items()))]
    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu=_cpu_name(),
        cpu_count=os.cpu_count() or 1,
        memory_total_bytes=int(psutil.virtual_memory().total),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        transformers=versions["transformers"] or "unknown",
        lmms_eval=versions["lmms-eval"],
        datasets=versions["datasets"],
        flash_attn=versions["flash-attn"],
        device=device,
        gpus=gpus,
        fingerprint=hashlib.sha256("|".join(fingerprint_parts).encode()).hexdigest()[:16],
    )
