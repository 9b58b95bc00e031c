"""A sweep's ledger: ``<root>/ledger.jsonl``, one JSON object per event in a run's life.

    {"time": "...", "run": "schedule.name=fix,seed=0", "state": "running", "attempt": 1, ...}

States: queued, running, done, failed, interrupted; a run's state is its last record. Each
record is appended with a single ``os.write`` on an ``O_APPEND`` descriptor and fsynced, so a
SIGKILL of the sweep never leaves half a record; a reader skips any line that does not parse
anyway (a torn write after a power loss), and a writer first ends such a line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE = "ledger.jsonl"  # in the sweep's root
STATES = ("queued", "running", "done", "failed", "interrupted")


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, run: str, state: str, **fields: Any) -> dict[str, Any]:
        """Append one record and return it."""
        if state not in STATES:
            raise ValueError(f"ledger state must be one of {', '.join(STATES)}, got {state!r}")
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": run, "state": state}
        record.update(fields)
        self._write((json.dumps(record) + "\n").encode())
        return record

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _ends_mid_line(fd):
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record, oldest first."""
        if not self.path.exists():
            return
        for line in self.path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a torn line
                continue
            if isinstance(record, dict) and "run" in record and "state" in record:
                yield record

    def last(self) -> dict[str, dict[str, Any]]:
        """Each run's last record: its current state."""
        return {r["run"]: r for r in self.records()}

    def attempts(self) -> dict[str, int]:
        """How many times each run has been started, over every invocation of the sweep."""
        counts: dict[str, int] = {}
        for r in self.records():
            if r["state"] == "running":
                counts[r["run"]] = counts.get(r["run"], 0) + 1
        return counts


def _ends_mid_line(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
