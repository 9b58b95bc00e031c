"""What every benchmark result carries: the device, driver and versions, the date, the command."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def driver_version() -> str | None:
    """The NVIDIA driver's version, or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # no NVML (no GPU, or no nvidia-ml-py): the field says so
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {_cpu_name()}"


def fp32_math() -> dict[str, Any]:
    """What "fp32" means now: cuDNN convolutions may use TF32 (torch's default), matmuls only
    at a float32_matmul_precision below "highest" (matmul_allow_tf32 says the same)."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN inside, the settings as they were after."""
    saved = fp32_math()
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved["float32_matmul_precision"])
        torch.backends.cudnn.allow_tf32 = saved["cudnn_allow_tf32"]


def environment(device: torch.device) -> dict[str, Any]:
    """Device, driver and versions, the date and the command: stored with every result."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cuda = device.type == "cuda"
    status = _git("status", "--porcelain")
    return {
        "device": device_name(device),
        "device_count": torch.cuda.device_count() if cuda else 0,
        "driver": driver_version() if cuda else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        **fp32_math(),  # what "fp32" means for the defaults baseline
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0") == "1",
        # a copy of the tree without .git (the lent GPU machine's) passes it as GIT_COMMIT
        "git_commit": _git("rev-parse", "HEAD") or os.environ.get("GIT_COMMIT"),
        "git_dirty": None if status is None else bool(status),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
