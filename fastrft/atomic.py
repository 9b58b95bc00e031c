"""Files written whole or not at all: checkpoints, results, markers, configs, datasets.

Each write goes to a temporary file beside the target (``.NAME.tmp-PID``, on the same
filesystem, so the rename is atomic), is fsynced, then renamed over the target, and the
folder is fsynced so the rename survives a crash. An exception or a kill mid-write leaves
the old file as it was; an exception also removes the temporary file (a kill leaves it, under
a name a later cleanup can find with ``temporary(path, "*")``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temporary(path: Path, pid: int | str | None = None, suffix: str = "") -> Path:
    """Where process ``pid`` (default: this one) writes ``path`` before renaming it, ending in
    ``suffix``; pid "*" gives a glob of every process's."""
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; on a clean exit it is fsynced and
    renamed over ``path``, on an exception removed. ``keep_suffix``: the temporary path ends
    in ``path``'s suffix too, for readers that go by it (a file checked before it is renamed)."""
    path = Path(path)
    tmp = temporary(path, suffix=path.suffix if keep_suffix else "")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # some filesystems refuse to open folders
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
