"""The Ray backend: the same runs as Ray tasks over a cluster, one GPU each (none on a
CPU-only cluster), or ``gpus_per_run`` trained with DDP under torchrun.

Each task starts the run's process (the same command as the local backend) on the node Ray
picks, so the sweep's root must be on a filesystem every node shares. The driver, this
process, keeps the ledger and decides the retries.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .launch import STOP_GRACE_S, Job, spawn, wait
from .tracker import Tracker

CONNECT_TIMEOUT_S = 5.0
TASK_FAILED = -1  # the exit code recorded when the Ray task itself failed (its node died)


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (HOST:PORT, ray://HOST:PORT or auto), or start a
    local instance (None or "local", with ``num_cpus``). An unreachable address is a one-line
    error, raised before anything starts. Returns whether this call started Ray."""
    import ray

    local = address in (None, "local")
    if not local and address != "auto":
        _check_reachable(address)
    if ray.is_initialized():  # a caller (or a test) set Ray up already
        return False
    options = {"num_cpus": num_cpus, "include_dashboard": False} if local else {}
    try:
        ray.init(address=address, logging_level="warning", log_to_driver=False, **options)
    except (ConnectionError, RuntimeError) as err:
        raise ValueError(
            f"--address {address!r}: no Ray cluster there ({str(err).splitlines()[0]}): start "
            "one with `ray start --head`, or fix --address"
        ) from err
    return True


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray connected (see `connect`) for the duration; shut down after if this started it."""
    started = connect(address, num_cpus)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _check_reachable(address: str) -> None:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT, auto or local"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ValueError(
            f"--address {address!r} is unreachable ({err.strerror or err}): start the cluster "
            "(`ray start --head`) or fix --address"
        ) from err


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def run_ray(
    jobs: Sequence[Job], tracker: Tracker, gpus_per_run: int, timeout_s: float | None = None
) -> None:
    """Run every job as a Ray task; Ray schedules them as the cluster's resources allow."""
    import ray

    task = ray.remote(_run_task).options(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)
    submitted: dict[ray.ObjectRef, tuple[Job, float]] = {}

    def submit(job: Job) -> None:
        ref = task.remote(job.command, str(job.run_dir), timeout_s)
        submitted[ref] = (job, time.monotonic())
        tracker.started(job.run, backend="ray")  # running: handed to the cluster

    for job in jobs:
        submit(job)
    try:
        while submitted:
            ready, _ = ray.wait(list(submitted), num_returns=1)
            job, start = submitted.pop(ready[0])
            code = _exit_code(ready[0])
            code = TASK_FAILED if code is None else code
            if tracker.finished(job.run, code, round(time.monotonic() - start, 1)):
                submit(job)
    except KeyboardInterrupt:
        for ref in submitted:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task, which stops its run
        for ref, (job, _) in submitted.items():
            tracker.interrupted(job.run, _exit_code(ref, timeout=STOP_GRACE_S))
        raise


def _run_task(command: Sequence[str], run_dir: str, timeout_s: float | None = None) -> int:
    """In a Ray worker: the run's process, with the GPUs Ray gave this task. Ray leaves
    CUDA_VISIBLE_DEVICES alone for a task given none, which would then see every GPU of
    its node: such a run is hidden from them."""
    import ray

    env = {} if ray.get_gpu_ids() else {"CUDA_VISIBLE_DEVICES": ""}
    # this node's interpreter: the driver's path to its own may not exist here
    command = [sys.executable, *command[1:]]
    return wait(spawn(command, Path(run_dir), env), timeout_s)


def _exit_code(ref, timeout: float | None = None) -> int | None:
    """The task's exit code; None if it was cancelled (or outlived ``timeout``)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError, TaskCancelledError

    try:
        return ray.get(ref, timeout=timeout)
    except (TaskCancelledError, GetTimeoutError):
        return None
    except RayError:
        return TASK_FAILED
