"""results.json, the numbers a finished run leaves in its directory: written by the trainer,
read by a rerun of the same run, by sweeps and by reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
