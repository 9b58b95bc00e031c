"""A run directory as a sweep sees it: the marker saying which sweep owns it, the results
the trainer left, and the log of its attempts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER = "sweep.json"  # in the sweep's root and in each of its run directories
LOG = "sweep.log"  # each attempt's stdout and stderr, appended
LOG_HEADER = "=== "  # starts the line the sweep writes before each attempt
SUMMARY_KEYS = ("clean_acc", "adv_acc", "expected_robustness", "eps", "delay_time")


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def load_results(run_dir: Path) -> dict[str, Any]:
    """The run's results.json: FileNotFoundError while the run has not finished, another
    OSError or a ValueError when the file is there but unusable (cut mid-write, edited)."""
    results = json.loads((run_dir / "results.json").read_text())
    if not isinstance(results, dict) or "clean_acc" not in results:
        raise ValueError("it holds no clean_acc")
    return results


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """The run's results.json, or None while it has not finished (or was cut mid-write)."""
    try:
        return load_results(run_dir)
    except (OSError, ValueError):
        return None


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the ledger keeps of a finished run."""
    return {k: results[k] for k in SUMMARY_KEYS if k in results}


def last_error(run_dir: Path) -> str:
    """The last line the run's process wrote (its one-line error, or a traceback's end)."""
    try:
        lines = (run_dir / LOG).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next(
        (s.strip() for s in reversed(lines) if s.strip() and not s.startswith(LOG_HEADER)), ""
    )
