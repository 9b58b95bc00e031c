"""Where a command will write, checked before it computes anything: a run, a sweep or an
evaluation that works for minutes and then cannot write its numbers loses them. The checks
create nothing. And fastrft's cache folder, shared by the demo and `fastrft weights`."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$FASTRFT_CACHE, else ~/.cache/fastrft."""
    return Path(os.environ.get("FASTRFT_CACHE") or Path.home() / ".cache" / "fastrft")


def check_out_dir(folder: Path, what: str) -> None:
    """Refuse, as a ValueError naming ``what`` (the key or option that gave the folder), a
    folder that is a file, or that could not be made or written into: the folder or, where
    it is still to be made, the deepest of its parents that exists (the one mkdir writes in)."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        made = "" if existing == folder else f"{folder} cannot be made: "
        raise ValueError(f"{what}: {made}{existing} is a file, not a folder: choose another {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"{what}: {existing} is not writable: choose another {what}, or make it writable"
        )


def check_out_file(path: Path, what: str) -> None:
    """Refuse, as a ValueError naming ``what``, a file path that is a folder, or whose folder
    does not exist or cannot be written into."""
    if path.is_dir():
        raise ValueError(
            f"{what}: {path} is a folder: give a file's path, such as {path / 'eval.json'}"
        )
    if not path.parent.exists():
        raise ValueError(
            f"{what}: the folder {path.parent} does not exist: create it, or choose another {what}"
        )
    check_out_dir(path.parent, what)
