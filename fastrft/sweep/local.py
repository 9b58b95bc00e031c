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

from .launch import Job, spawn, stop
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
    return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(g)}, nproc=k) for g in groups]


@dataclass
class _Active:
    job: Job
    proc: subprocess.Popen
    slot: int
    started: float


def run_local(jobs: Sequence[Job], tracker: Tracker, slots: Sequence[Slot]) -> None:
    """Run every job, each in its own process, ``len(slots)`` at a time."""
    pending, active = deque(jobs), []
    free = list(range(len(slots)))[::-1]
    try:
        while pending or active:
            while pending and free:
                job, slot = pending.popleft(), free.pop()
                proc = spawn(job.command, job.run_dir, slots[slot].env)
                tracker.started(job.run, backend="local", pid=proc.pid, slot=slot)
                active.append(_Active(job, proc, slot, time.monotonic()))
            time.sleep(POLL_S)
            for a in [a for a in active if a.proc.poll() is not None]:
                active.remove(a)
                free.append(a.slot)
                seconds = round(time.monotonic() - a.started, 1)
                if tracker.finished(a.job.run, a.proc.returncode, seconds):
                    pending.append(a.job)
    except KeyboardInterrupt:
        stop([a.proc for a in active])
        for a in active:
            tracker.interrupted(a.job.run, a.proc.returncode)
        raise
