"""How one run's process is started and stopped, by the local scheduler and by a Ray task
alike: ``python -m fastrft train FILES OVERRIDES out_dir=RUN_DIR`` (under torchrun for a
multi-GPU run), its output appended to the run's log.

A run's process gets its own session, so a Ctrl-C on the terminal reaches only the sweep,
which forwards it once (the trainer stops, keeping its last checkpoint); and on Linux it dies
with its parent, so a sweep killed with SIGKILL leaves no run training unseen in the
directory that its rerun resumes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .rundir import LOG, LOG_HEADER
from .spec import Run

STOP_GRACE_S = 60.0  # how long a run may take to stop after SIGINT before it is killed
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Job:
    """A run ready to start: its directory (created, with its marker) and command line."""

    run: Run
    run_dir: Path
    command: tuple[str, ...]


def train_command(run: Run, run_dir: Path, nproc: int = 1) -> tuple[str, ...]:
    """The run's command line; ``nproc`` > 1 trains with DDP under torchrun."""
    head = [sys.executable, "-m", "fastrft"]
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        head += ["--nproc-per-node", str(nproc), "-m", "fastrft"]
    return (*head, "train", "--no-progress", *run.train_args(run_dir))


def spawn(command: Sequence[str], run_dir: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """Start the run's process, its stdout and stderr appended to ``run_dir/sweep.log``."""
    with open(run_dir / LOG, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"{LOG_HEADER}{stamp}: {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGKILL when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(1)

    return preexec


def stop(procs: Sequence[subprocess.Popen], grace: float = STOP_GRACE_S) -> None:
    """SIGINT to each running process, then wait; kill what is left after ``grace`` seconds
    (or at a second Ctrl-C)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        for p in procs:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def wait(proc: subprocess.Popen) -> int:
    """Wait for a process; an interruption of the waiter (a cancelled Ray task) stops it."""
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop([proc])
        raise


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a batch system's stop) ends the sweep as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
