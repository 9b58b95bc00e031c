"""The shared benchmark runner: one way to time a call, and the environment every result carries.

On CUDA, ``triton.testing.do_bench`` times with CUDA events around each call after a warm-up,
and flushes the L2 cache before each one; the median and the 20%/80% quantiles are reported
(Liger-Kernel's convention). On the CPU (smoke runs only) a host clock times each call, which
is meaningful for the eager chains and not at all for interpreted kernels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from fastrft.bench.environment import environment
from fastrft.bench.timing import Timing, quantiles_ms

__all__ = [
    "Timing",
    "bench",
    "bench_graph",
    "copy_bandwidth",
    "environment",
    "gbps",
    "quantiles_ms",
]

QUANTILES = (0.5, 0.2, 0.8)


def bench(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    warmup_ms: float = 25,
    rep_ms: float = 100,
    cpu_reps: int = 5,
) -> Timing:
    """Time ``fn``. CUDA: do_bench with ``warmup_ms`` / ``rep_ms`` budgets. CPU: one warm-up
    call, then ``cpu_reps`` calls on the host clock."""
    if device.type == "cuda":
        from triton.testing import do_bench

        med, p20, p80 = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES))
        return Timing(med, p20, p80)
    fn()
    times = []
    for _ in range(cpu_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return quantiles_ms(times)


def bench_graph(
    fn: Callable[[], Any], device: torch.device, *, rep_ms: float = 100
) -> Timing | None:
    """Time ``fn`` replayed from a CUDA graph: the kernels alone, without the Python that
    launches them, which is what an attack captured whole pays. None off CUDA."""
    if device.type != "cuda":
        return None
    from triton.testing import do_bench_cudagraph

    fn()
    torch.cuda.synchronize()
    med, p20, p80 = do_bench_cudagraph(fn, rep=rep_ms, quantiles=list(QUANTILES))
    return Timing(med, p20, p80)


def gbps(nbytes: int, ms: float) -> float:
    """Bandwidth in GB/s (10^9 bytes) of ``nbytes`` moved in ``ms`` milliseconds."""
    return nbytes / (ms * 1e-3) / 1e9


def copy_bandwidth(
    device: torch.device, nbytes: int, **bench_kwargs: Any
) -> tuple[float, Timing, int]:
    """(GB/s, timing, bytes moved) of a device-to-device copy of ``nbytes``: the practical
    bandwidth ceiling, counting the bytes read and the bytes written."""
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src), device, **bench_kwargs)
    moved = 2 * src.numel() * src.element_size()
    return gbps(moved, t.median_ms), t, moved
