"""The runs a report reads: each run directory's resolved config, results and per-epoch
metrics. Under a sweep's root the ledger names the runs (and the state of those without
results); elsewhere every folder below RUNS_DIR holding a config.yaml is a run. A run whose
results.json is there but unreadable is listed as "results unreadable", with the reason in
its ``problem``: not "done" (the ledger's word) nor "unfinished"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrft.config import read_run_config
from fastrft.results import load_results
from fastrft.sweep.ledger import FILE as LEDGER
from fastrft.sweep.ledger import Ledger
from fastrft.sweep.spec import flatten

UNREADABLE = "results unreadable"


@dataclass(frozen=True)
class RunRecord:
    name: str  # the run directory, relative to RUNS_DIR
    config: dict[str, Any] | None  # the resolved config, flattened to dotted keys
    results: dict[str, Any] | None  # results.json; None while the run has not finished
    metrics: tuple[dict[str, Any], ...]  # metrics.jsonl, one record per epoch
    state: str  # done, results unreadable, or the ledger's last word (failed, interrupted, ...)
    problem: str = ""  # why results.json, which exists, could not be read

    @property
    def method(self) -> str:
        """The budget schedule: fix (RFT-fix), hinge (Epsilon-Scheduling), ..., with its
        hinges when set explicitly."""
        c = self.config or {}
        name = str(c.get("schedule.name"))
        if name == "fix":
            return name
        t1, t2 = c.get("schedule.t1"), c.get("schedule.t2")
        hinges = f"({t1},{t2})" if t1 is not None or t2 is not None else ""
        return name + hinges + ("/step" if c.get("schedule.per_step") else "")

    @property
    def dataset(self) -> str:
        c = self.config or {}
        if c.get("data.source") == "toy" or not c.get("data.root"):
            return str(c.get("data.source"))
        return Path(str(c["data.root"])).name.removesuffix(".beton").removesuffix(".npz")


def collect(runs_dir: str | Path) -> list[RunRecord]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {str(runs_dir)!r} not found")
    ledger = Ledger(runs_dir / LEDGER)
    states = {run: r["state"] for run, r in ledger.last().items()}
    if ledger.path.exists():
        folders = [runs_dir / run for run in states]
    else:
        folders = sorted(p.parent for p in runs_dir.rglob("config.yaml"))
    if not folders:
        raise FileNotFoundError(
            f"{runs_dir} holds no runs (no ledger.jsonl, no config.yaml below it): point at a "
            "sweep's root or a folder of run directories"
        )
    return [_read(runs_dir, folder, states) for folder in folders]


def _read(runs_dir: Path, folder: Path, states: dict[str, str]) -> RunRecord:
    name = folder.relative_to(runs_dir).as_posix()
    raw = read_run_config(folder)  # a corrupt config.yaml is refused, by name
    config = flatten(raw) if raw is not None else None
    results, problem = None, ""
    try:
        results = load_results(folder)
    except FileNotFoundError:
        pass  # not finished
    except (OSError, ValueError) as err:
        problem = f"{folder / 'results.json'}: unreadable ({err})"
    if results is not None:
        state = "done"
    else:
        state = UNREADABLE if problem else states.get(name, "unfinished")
    return RunRecord(name, config, results, tuple(_metrics(folder)), state, problem)


def _metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by a crash
            continue
    return out
