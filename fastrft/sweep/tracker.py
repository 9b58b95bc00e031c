"""The runs of one invocation of a sweep, whatever runs them: each start and end goes to the
ledger and to the terminal, and a failed run is tried again up to the retry limit, unless it
failed on bad input (exit 2: a config or data error, the same on every try)."""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from fastrft.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from fastrft.results import read_results

from .launch import TIMED_OUT
from .ledger import Ledger
from .rundir import last_error, summary
from .spec import Run


@dataclass
class Outcome:
    """Where a run stands in this invocation."""

    state: str
    tries: int = 0  # attempts in this invocation
    results: dict[str, Any] | None = None
    error: str = ""
    bad_input: bool = False  # failed with exit 2: not tried again


class Tracker:
    def __init__(self, ledger: Ledger, root: Path, retries: int, console: Console) -> None:
        self.ledger, self.root, self.retries, self.console = ledger, root, retries, console
        self.attempts = Counter(ledger.attempts())  # over every invocation
        self.outcomes: dict[str, Outcome] = {}

    def queue(self, runs: list[Run]) -> None:
        for run in runs:
            self.ledger.append(run.id, "queued", attempt=self.attempts[run.id])
            self.outcomes[run.id] = Outcome("queued")

    def started(self, run: Run, **info: Any) -> None:
        """Record a start; attempts are numbered over every invocation of the sweep."""
        self.attempts[run.id] += 1
        self.outcomes[run.id].tries += 1
        self.outcomes[run.id].state = "running"
        self.ledger.append(run.id, "running", attempt=self.attempts[run.id], **info)

    def finished(self, run: Run, exit_code: int, seconds: float) -> bool:
        """Record how a run's process ended; True if it should be tried again."""
        outcome = self.outcomes[run.id]
        results = read_results(self.root / run.id)
        common = {"attempt": self.attempts[run.id], "exit_code": exit_code, "seconds": seconds}
        if exit_code == 0 and results is not None:
            outcome.state, outcome.results = "done", summary(results)
            self.ledger.append(run.id, "done", results=outcome.results, **common)
            self._say(run, "done", _numbers(outcome.results))
            return False
        if exit_code == EXIT_INTERRUPTED:  # the trainer's after Ctrl-C (SIGINT)
            self.interrupted(run, exit_code)
            return False
        timed_out = "stopped at --run-timeout" if exit_code == TIMED_OUT else None
        outcome.error = timed_out or _killed_by(exit_code) or last_error(self.root / run.id)
        outcome.error = outcome.error or f"exit code {exit_code}"
        outcome.state = "failed"
        outcome.bad_input = exit_code == EXIT_BAD_INPUT
        if outcome.bad_input:
            # the fingerprint lets a rerun tell an unchanged config (skipped) from a fixed one
            common["config"] = run.fingerprint()
            retry, note = False, "not tried again (bad input: see --retry-failed)"
        else:
            retry = outcome.tries <= self.retries
            note = "trying again" if retry else f"after {outcome.tries} attempt(s)"
        self.ledger.append(run.id, "failed", error=outcome.error, **common)
        self._say(run, "failed", f"exit {exit_code}, {note}: {outcome.error}")
        return retry

    def interrupted(self, run: Run, exit_code: int | None) -> None:
        self.outcomes[run.id].state = "interrupted"
        self.ledger.append(
            run.id, "interrupted", attempt=self.attempts[run.id], exit_code=exit_code
        )
        self._say(run, "interrupted", "resumes from its last checkpoint when the sweep reruns")

    def _say(self, run: Run, state: str, detail: str) -> None:
        style = {"done": "green", "failed": "red"}.get(state, "yellow")
        self.console.print(f"[{style}]{state:<11}[/] {run.id}  {detail}")


def _numbers(results: dict[str, Any]) -> str:
    return (
        f"clean {results['clean_acc']:.2%}  adv {results['adv_acc']:.2%}  "
        f"E.adv {results['expected_robustness']:.2%}"
    )


def _killed_by(exit_code: int) -> str | None:
    """What a signal's death says, where the log's last line would mislead: a run killed
    mid-epoch has an epoch summary as its last line."""
    if exit_code >= 0:
        return None
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    hint = " (the kernel's out-of-memory killer?)" if -exit_code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"
