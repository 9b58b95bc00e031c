"""Tying a process's life to its parent's (Linux; elsewhere a no-op): a run a sweep started,
or a DDP worker torchrun started, is killed when what started it dies, so that no orphan
goes on training in a run directory, or holding a GPU, that a rerun hands to another run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# loaded before any fork: a child between fork and exec should not load libraries
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies; exit at once if the parent
    (``parent``, its pid) is already gone."""
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took hold
        os._exit(1)
