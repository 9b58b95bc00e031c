"""A run directory as a sweep sees it: the marker saying which sweep owns it, the summary of
the results the trainer left (fastrft.results reads them), and the log of its attempts."""

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
