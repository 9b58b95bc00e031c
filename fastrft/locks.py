"""An exclusive lock on a directory for as long as a process works in it: ``fcntl.flock``
on a lock file there, which the kernel releases when the process ends, SIGKILL included, so
a killed run or sweep leaves no stale lock behind. The holder writes its pid, host and start
time into the file, so that a process refused can name it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = ".lock"


class Busy(ValueError):
    """A folder another live process holds (a run directory, a sweep root): the same command
    can succeed once that process ends, so `fastrft` exits EXIT_BUSY (fastrft.errors), which a
    sweep tries again, not EXIT_BAD_INPUT. A ValueError, so code that catches bad input still
    catches it."""


def acquire(folder: Path, busy: str) -> int:
    """Lock ``folder`` (created if missing) or raise Busy: ``busy`` followed by the holder if
    another process holds it (ValueError where the filesystem cannot lock). Returns the lock
    file's descriptor: closing it, or the process's end, releases the lock."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        os.close(fd)
        raise Busy(f"{busy} ({_holder(path)}): wait for it to end, or stop it") from err
    except OSError as err:  # a filesystem without locks (Lustre without -o flock)
        os.close(fd)
        raise ValueError(
            f"cannot lock {path} ({err.strerror or err}): use a directory on a filesystem "
            "that supports file locks"
        ) from err
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    return fd


@contextmanager
def locked(folder: Path, busy: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block (see :func:`acquire`)."""
    fd = acquire(folder, busy)
    try:
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        h = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(h["started"]))
        return f"pid {h['pid']} on {h['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):  # written by nothing yet, or cut short
        return "holder unknown"
