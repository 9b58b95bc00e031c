"""Where a step's time goes: torch.profiler over a few steps, the top operators by self
time (device time on a GPU, host time on a CPU), per step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from .timing import synchronize


def _self_time_us(event: Any, cuda: bool) -> float:
    if not cuda:
        return event.self_cpu_time_total
    # the attribute was renamed from cuda to device across torch versions
    return getattr(event, "self_device_time_total", None) or event.self_cuda_time_total


def top_operators(
    step: Callable[[], None], device: torch.device, *, steps: int = 3, top: int = 12
) -> list[dict[str, Any]]:
    """The ``top`` operators by self time over ``steps`` calls of a warmed-up ``step``."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    events = [e for e in prof.key_averages() if _self_time_us(e, cuda) > 0]
    total = sum(_self_time_us(e, cuda) for e in events)
    events.sort(key=lambda e: _self_time_us(e, cuda), reverse=True)
    return [
        {
            "op": e.key,
            "self_ms_per_step": _self_time_us(e, cuda) / 1e3 / steps,
            "share": _self_time_us(e, cuda) / total,
            "calls_per_step": e.count / steps,
        }
        for e in events[:top]
    ]
