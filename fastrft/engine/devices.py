"""Which device a process runs on: `device=` of a run (auto, cpu, cuda, cuda:N), under
torchrun each process on its local rank's GPU; an explicit GPU is checked and made the
current device, since fastrft's kernels, CUDA events and graph streams use the current one.
"""

from __future__ import annotations

import torch

from fastrft.config import ConfigError

from .distributed import Dist


def pick_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device: CUDA was asked for but no GPU is visible; set device=cpu")
    if name.startswith("cuda:") and d.enabled:
        raise ConfigError(
            f"device: {name} under torchrun: each process takes its own GPU; set device=cuda"
        )
    if name == "cuda" and d.enabled:
        name = f"cuda:{d.local_rank}"
    device = torch.device(name)
    make_current(device, "device")
    return device


def make_current(device: torch.device, setting: str) -> None:
    """Make an explicit ``cuda:N`` the current device, once checked to exist; ``setting``
    names where it came from in the error."""
    if device.type != "cuda" or device.index is None:
        return
    count = torch.cuda.device_count()
    if device.index >= count:
        raise ConfigError(
            f"{setting}: {device}, but {count} GPU(s) are visible "
            "(CUDA_VISIBLE_DEVICES renumbers them from 0)"
        )
    torch.cuda.set_device(device)
