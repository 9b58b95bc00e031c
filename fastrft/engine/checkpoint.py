"""Checkpoints that survive a crash: written atomically, loaded with weights_only.

Each save writes a temporary file beside the target (fastrft.atomic), then moves ``last.pt``
to ``prev.pt`` if it is readable (a corrupt one is simply replaced, so the good ``prev.pt``
stays) and renames the new one, fsynced, over ``last.pt``. A crash at any point leaves at
least one complete checkpoint; loading falls back to ``prev.pt``, with a warning, if
``last.pt`` is missing or unreadable. Everything saved is tensors and plain Python values, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrft.atomic import atomic_path, temporary
from fastrft.errors import not_loadable


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from: torch (CPU and CUDA), numpy and Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(state["python"]))


def _as_tuples(v: Any) -> Any:
    return tuple(_as_tuples(i) for i in v) if isinstance(v, (list, tuple)) else v


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


class Checkpointer:
    """``last.pt`` and ``prev.pt`` in a run's checkpoint folder. ``warn`` gets the one-line
    warning of a load that fell back to ``prev.pt``."""

    def __init__(self, folder: str | Path, warn: Callable[[str], None] = _to_stderr) -> None:
        self.folder = Path(folder)
        self.last, self.prev = self.folder / "last.pt", self.folder / "prev.pt"
        self.warn = warn
        self.loaded_from: Path | None = None  # the file the last load() read
        self._last_readable: bool | None = None  # known since a load or save; None: unknown

    def save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.last) as tmp:
            torch.save(state, tmp)
            if self._last_is_readable():  # the new one is written: the old one may step back
                os.replace(self.last, self.prev)
        self._last_readable = True

    def remove_leftovers(self) -> None:
        """Delete the temporary files of saves cut short (``.last.pt.tmp-PID``, from a process
        killed mid-write), which nothing else removes. For the holder of the run directory's
        lock, before it saves: no other process writes here then, so each one is left over,
        whichever process (dead, or alive doing something else) its pid names."""
        for tmp in self.folder.glob(temporary(self.last, "*").name):
            tmp.unlink(missing_ok=True)

    def _last_is_readable(self) -> bool:
        if self._last_readable is None:
            try:
                _load(self.last)
                self._last_readable = True
            except (OSError, ValueError):
                self._last_readable = False
        return self._last_readable

    def load(self) -> dict[str, Any] | None:
        """The newest readable checkpoint, or None if there is none."""
        problems = []
        for path in (self.last, self.prev):
            if not path.exists():
                problems.append(f"{path.name} is missing")
                continue
            try:
                state = _load(path)
            except ValueError as err:
                problems.append(_one_line(err))
                continue
            self._last_readable, self.loaded_from = path == self.last, path
            if problems:
                epoch = state["epoch"]
                self.warn(f"warning: {problems[0]}; falling back to {path} (epoch {epoch})")
            return state
        if self.prev.exists() or self.last.exists():
            raise ValueError(
                f"no readable checkpoint in {self.folder}: {'; '.join(problems)}; move the "
                "folder away to start the run afresh"
            )
        return None


def _load(path: Path) -> dict[str, Any]:
    if path.stat().st_size == 0:  # torch's error for it is empty
        raise ValueError(f"checkpoint {str(path)!r} is empty (its write was cut short)")
    return load_checkpoint(path)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file, read with weights_only=True; a clear error naming a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise not_loadable(path, "fastrft checkpoint", err) from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{str(path)!r} is not a fastrft checkpoint (no 'model' entry)")
    return state
