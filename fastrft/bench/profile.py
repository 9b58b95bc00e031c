"""Where a step's time goes: torch.profiler over a few steps, the top operators by self
time per step. On a GPU these are the kernels (device time; kernels replayed from a CUDA
graph belong to no operator, so operators would miss them, and counting both would count
each kernel twice); on a CPU, the operators (host time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from .timing import synchronize


def _kernel(event: Any) -> bool:
    return event.device_type == DeviceType.CUDA and not getattr(event, "is_user_annotation", False)


def top_operators(
    step: Callable[[], None], device: torch.device, *, steps: int = 3, top: int = 12
) -> list[dict[str, Any]]:
    """The ``top`` operators (kernels on a GPU) by self time over ``steps`` calls of a
    warmed-up ``step``."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    if cuda:
        events = [(e, e.self_device_time_total) for e in prof.key_averages() if _kernel(e)]
    else:
        events = [(e, e.self_cpu_time_total) for e in prof.key_averages()]
    events = sorted(((e, us) for e, us in events if us > 0), key=lambda p: p[1], reverse=True)
    total = sum(us for _, us in events)
    return [
        {
            "op": e.key,
            "self_ms_per_step": us / 1e3 / steps,
            "share": us / total,
            "calls_per_step": e.count / steps,
        }
        for e, us in events[:top]
    ]
