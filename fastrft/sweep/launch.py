"""How one run's process is started and stopped, by the local scheduler and by a Ray task
alike: ``python -m fastrft train FILES OVERRIDES out_dir=RUN_DIR`` (under torchrun for a
multi-GPU run), its output appended to the run's log.

A run's process gets its own session, so a Ctrl-C on the terminal reaches only the sweep,
which forwards it once (the trainer stops, keeping its last checkpoint); and on Linux it dies
with its parent, so a sweep killed with SIGKILL leaves no run training unseen in the
directory that its rerun resumes.
"""

from __future__ import annotations

import contextlib
import functools
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

from fastrft.lifetime import die_with_parent

from .rundir import LOG, LOG_HEADER
from .spec import Run

STOP_GRACE_S = 60.0  # how long a run may take to stop after SIGINT before it is killed
TIMED_OUT = 124  # the exit code recorded for a run stopped at --run-timeout (as timeout(1))


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
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )


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
                kill_tree(p.pid)
                p.wait()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it: torchrun starts its workers in
    sessions of their own, which killing torchrun alone would leave training."""
    for child in [*_descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid``, from /proc (none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait(proc: subprocess.Popen, timeout_s: float | None = None) -> int:
    """Wait for a process, at most ``timeout_s`` seconds (then stop it: TIMED_OUT); an
    interruption of the waiter (a cancelled Ray task) stops it."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop([proc])
        return TIMED_OUT
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
