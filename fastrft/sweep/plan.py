"""Before a sweep starts: is its root (and each run directory) its own, is no other sweep
running there, and which runs are left to do."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastrft import locks
from fastrft.atomic import write_json
from fastrft.errors import EXIT_BAD_INPUT
from fastrft.paths import check_out_dir
from fastrft.results import read_results

from .ledger import Ledger
from .rundir import MARKER, read_marker, summary
from .spec import Run, SweepSpec


@dataclass
class Plan:
    todo: list[Run]
    finished: dict[str, dict[str, Any]]  # run id -> results summary, of runs already done
    # run id -> error, of runs that failed on bad input under their present config: not rerun
    refused: dict[str, str] = field(default_factory=dict)


def identity(spec: SweepSpec) -> dict[str, str]:
    return {"sweep": spec.name, "fingerprint": spec.fingerprint()}


def check_root(spec: SweepSpec, runs: Sequence[Run]) -> None:
    """Refuse a root, or a run directory in it, that another sweep (or something else) made."""
    root, me = spec.root, identity(spec)
    check_out_dir(root, "--root")
    marker = read_marker(root)
    if marker is None and root.is_dir() and any(p.name != locks.LOCK for p in root.iterdir()):
        raise ValueError(
            f"{root} is not empty and holds no sweep ({MARKER} missing): choose another --root"
        )
    if marker is not None and _owner(marker) != me:
        raise ValueError(
            f"{root} holds the sweep {_describe(marker)}, not {_describe(me)} (another name or "
            "base config): choose another --root, or delete that directory"
        )
    for run in runs:
        folder = root / run.id
        if folder.exists() and _owner(read_marker(folder), "run") != {**me, "run": run.id}:
            raise ValueError(
                f"run directory {folder} does not belong to the sweep {_describe(me)} (its "
                f"{MARKER} is missing or names another sweep): move it away or choose another "
                "--root"
            )


def _owner(marker: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    """What a marker says about its owner: the sweep, its fingerprint (and the run)."""
    return {k: (marker or {}).get(k) for k in ("sweep", "fingerprint", *keys)}


def _describe(marker: dict[str, Any]) -> str:
    return f"{marker.get('sweep')!r} (fingerprint {marker.get('fingerprint')})"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the root's lock: two sweeps on one root would run the same runs twice."""
    with locks.locked(root, f"another `fastrft sweep` is running on {root}"):
        yield


def mark_root(spec: SweepSpec) -> None:
    spec.root.mkdir(parents=True, exist_ok=True)
    write_json(spec.root / MARKER, {**identity(spec), "spec": str(spec.path)})


def mark_run(spec: SweepSpec, run: Run) -> Path:
    """The run's directory, created with its marker before its process starts."""
    folder = spec.root / run.id
    folder.mkdir(parents=True, exist_ok=True)
    if read_marker(folder) is None:
        write_json(folder / MARKER, {**identity(spec), "run": run.id})
    return folder


def plan(spec: SweepSpec, runs: Sequence[Run], ledger: Ledger, retry_failed: bool = False) -> Plan:
    """Split the runs into finished (results.json present), refused (failed on bad input, exit
    2, under the same config: it would fail again; unless ``retry_failed``) and to do, and
    bring the ledger up to date with what a killed sweep could not record: a run that finished
    (done) or did not (interrupted) after the sweep's last word on it."""
    last = ledger.last()
    todo, finished, refused = [], {}, {}
    for run in runs:
        results = read_results(spec.root / run.id)
        record = last.get(run.id, {})
        state, attempt = record.get("state"), record.get("attempt", 0)
        if results is not None:
            finished[run.id] = summary(results)
            if state != "done":
                ledger.append(
                    run.id, "done", attempt=attempt, results=finished[run.id], recovered=True
                )
            continue
        if state == "running":
            ledger.append(
                run.id, "interrupted", attempt=attempt, note="the sweep stopped while it ran"
            )
        if not retry_failed and failed_on_bad_input(record, run):
            refused[run.id] = record.get("error", "")
            continue
        todo.append(run)
    return Plan(todo, finished, refused)


def failed_on_bad_input(record: dict[str, Any], run: Run) -> bool:
    """Whether the run's last attempt exited 2 under the config it has now."""
    return (
        record.get("state") == "failed"
        and record.get("exit_code") == EXIT_BAD_INPUT
        and record.get("config") == run.fingerprint()
    )
