"""Timing done one way everywhere: medians and spreads over repeats, warm-up kept apart.

On CUDA, a repeat is timed with CUDA events around back-to-back calls (the host never
waits between calls, as in a training loop); on the CPU with the host clock. Either way
the device is synchronised before and after, so queued work is never counted twice.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median and the 20% / 80% quantiles."""

    median_ms: float
    p20_ms: float
    p80_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quantiles_ms(times_s: list[float]) -> Timing:
    """Median and 20/80% quantiles of per-call times in seconds, as a Timing in ms."""
    ms = sorted(t * 1e3 for t in times_s)
    if len(ms) == 1:
        return Timing(ms[0], ms[0], ms[0])
    q = statistics.quantiles(ms, n=10, method="inclusive")  # deciles: q[1] = 20%, q[7] = 80%
    return Timing(statistics.median(ms), q[1], q[7])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds for one call of ``fn``, device work included (for warm-up and compilation)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_calls(
    fn: Callable[[], Any], device: torch.device, *, calls: int, repeats: int
) -> tuple[Timing, float]:
    """(ms per call over ``repeats`` repeats of ``calls`` back-to-back calls, total seconds).

    Call ``fn`` enough times beforehand that compilation and capture are over."""
    per_call_s = []
    total = 0.0
    for _ in range(repeats):
        synchronize(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            seconds = time.perf_counter() - t0
        per_call_s.append(seconds / calls)
        total += seconds
    return quantiles_ms(per_call_s), total
