"""The shared benchmark runner: one way to time a call, and the environment every result carries.

On CUDA, ``triton.testing.do_bench`` times with CUDA events around each call after a warm-up,
and flushes the L2 cache before each one; the median and the 20%/80% quantiles are reported
(Liger-Kernel's convention). On the CPU (smoke runs only) a host clock times each call, which
is meaningful for the eager chains and not at all for interpreted kernels.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
QUANTILES = (0.5, 0.2, 0.8)


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


def _driver() -> str | None:
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
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu: {_cpu_name()}",
        "device_count": torch.cuda.device_count() if cuda else 0,
        "driver": _driver() if cuda else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0") == "1",
        # a copy of the tree without .git (the lent GPU machine's) passes it as GIT_COMMIT
        "git_commit": _git("rev-parse", "HEAD") or os.environ.get("GIT_COMMIT"),
        "git_dirty": None if status is None else bool(status),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
