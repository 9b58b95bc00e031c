"""The local backend: a sweep's runs as processes on this machine, a few at a time.

With GPUs, one run per visible GPU (``CUDA_VISIBLE_DEVICES`` set for each), or per group of
``gpus_per_run`` GPUs trained with DDP; on the CPU, ``jobs`` runs that share the cores.
A failed run frees its slot for the others; Ctrl-C (or SIGTERM) stops every run, each keeping
its last checkpoint, and records it as interrupted.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .launch import TIMED_OUT, Job, spawn, stop
from .tracker import Tracker

POLL_S = 0.2


@dataclass
class Slot:
    """Where one run at a time trains: its environment and its processes (DDP when > 1)."""

    env: dict[str, str]
    nproc: int = 1


def visible_gpus() -> list[str]:
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def local_slots(jobs: int | None, gpus_per_run: int | None) -> list[Slot]:
    """One slot per GPU (or group of ``gpus_per_run``), at most ``jobs``; on the CPU (or with
    ``gpus_per_run`` 0) ``jobs`` slots (default 1), the cores shared among them."""
    gpus = visible_gpus() if gpus_per_run != 0 else []
    if not gpus:
        if gpus_per_run:
            raise ValueError(f"--gpus-per-run {gpus_per_run}, but no GPU is visible")
        n = jobs or 1
        threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
        return [Slot({"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads}) for _ in range(n)]
    k = gpus_per_run or 1
    if k > len(gpus):
        raise ValueError(f"--gpus-per-run {k}, but only {len(gpus)} GPU(s) are visible")
    groups = [gpus[i : i + k] for i in range(0, len(gpus) - k + 1, k)][: jobs or None]
    # each run's share of the cores, for its threads and torch.compile's workers: eight
    # runs each starting a compile worker per core would crowd the host
    share = str(max(1, (os.cpu_count() or 1) // (len(groups) * k)))
    threads = {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", share),
        "TORCHINDUCTOR_COMPILE_THREADS": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", share),
    }
    return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(g), **threads}, nproc=k) for g in groups]


@dataclass
class _Active:
    job: Job
    proc: subprocess.Popen
    slot: int
    started: float


def run_local(
    jobs: Sequence[Job], tracker: Tracker, slots: Sequence[Slot], timeout_s: float | None = None
) -> None:
    """Run every job, each in its own process, ``len(slots)`` at a time; a run still going
    after ``timeout_s`` seconds (hung, say, in a collective) is stopped and fails."""
    pending, active = deque(jobs), []
    free = deque(range(len(slots)))  # freed slots go last: runs spread over the GPUs
    failed_on: dict[Path, int] = {}  # a failed run's slot, which its retry avoids
    try:
        while pending or active:
            while pending and free:
                job = pending.popleft()
                slot = _take_slot(free, avoid=failed_on.get(job.run_dir))
                env = slots[slot].env
                proc = spawn(job.command, job.run_dir, env)
                gpus = env.get("CUDA_VISIBLE_DEVICES") or None
                tracker.started(job.run, backend="local", pid=proc.pid, slot=slot, gpus=gpus)
                active.append(_Active(job, proc, slot, time.monotonic()))
            time.sleep(POLL_S)
            now = time.monotonic()
            late = [a for a in active if timeout_s is not None and now - a.started > timeout_s]
            stop([a.proc for a in late])
            for a in [a for a in active if a in late or a.proc.poll() is not None]:
                active.remove(a)
                free.append(a.slot)
                seconds = round(time.monotonic() - a.started, 1)
                code = TIMED_OUT if a in late else a.proc.returncode
                if tracker.finished(a.job.run, code, seconds):
                    failed_on[a.job.run_dir] = a.slot
                    pending.append(a.job)
    except KeyboardInterrupt:
        stop([a.proc for a in active])
        for a in active:
            tracker.interrupted(a.job.run, a.proc.returncode)
        raise


def _take_slot(free: deque[int], avoid: int | None) -> int:
    """The first free slot other than ``avoid`` (where a run just failed: one bad GPU must
    not fail a run's every retry), or that one if it is the only one free."""
    for i, slot in enumerate(free):
        if slot != avoid:
            del free[i]
            return slot
    return free.popleft()
