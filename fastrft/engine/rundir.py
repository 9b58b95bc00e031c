"""A run's directory (out_dir) as the trainer keeps it: the lock that keeps a second run out,
config.yaml, the checkpoints, the metrics log and results.json; and the check that a run
resumed there is the same run. Only the main process writes; every process reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from fastrft import locks
from fastrft.atomic import write_json
from fastrft.config import ConfigError, RunConfig, read_run_config, save_config, to_yaml
from fastrft.paths import check_out_dir
from fastrft.results import read_results

from .checkpoint import Checkpointer
from .log import MetricsLog

EPOCHS_FIXED = (
    " (a run cannot resume under another epoch count: the eps schedule and the learning-rate"
    " plan are laid out over its epochs)"
)


class RunDir:
    """``cfg.out_dir``, checked at once: a folder this process may write (the main process's
    check), and the config.yaml a run left there, if any."""

    def __init__(self, cfg: RunConfig, main: bool, console: Console):
        self.cfg, self.main, self.console = cfg, main, console
        self.path = Path(cfg.out_dir)
        # refused before the data and the model, minutes of work, are built
        if main:
            check_out_dir(self.path, "out_dir")
        self.saved_config = read_run_config(self.path)  # None: no config.yaml yet
        self.checkpointer = Checkpointer(self.path / "checkpoints", warn=self.say)
        self.log: MetricsLog | None = None  # opened once the directory is known to hold this run
        self._lock: int | None = None

    def say(self, message: str) -> None:
        if self.main:
            self.console.print(message, markup=False, highlight=False)

    def lock(self) -> None:
        """Held until close(): two runs in one directory would interleave logs and
        checkpoints; taken before anything is written there."""
        if not self.main:
            return
        try:
            self._lock = locks.acquire(self.path, f"out_dir: {self.path} is in use by another run")
        except locks.Busy:
            raise  # not bad input: the same run can go on once the holder ends (EXIT_BUSY)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        self.checkpointer.remove_leftovers()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def open(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, None to start afresh, once the directory is known
        to hold this run: config.yaml written, the metrics log opened and cut back to the
        checkpoint's epoch."""
        state = self.checkpointer.load()
        # what the run was trained under: its checkpoint's own config (config.yaml may be gone
        # or edited), or config.yaml for a run stopped before its first checkpoint
        ran = yaml.safe_load(state["config"]) if state is not None else self.saved_config
        if ran is not None:
            self._check_same_run(ran)
        if self.main:
            # lock() has made it; a caller resuming without fit() (a tool, a test) not
            self.path.mkdir(parents=True, exist_ok=True)
            saved = self.path / "config.yaml"
            if not saved.exists() or saved.read_text() != to_yaml(self.cfg):
                save_config(self.cfg, saved)
            self.log = MetricsLog(self.path)
            # records of epochs after the checkpoint's (all, before the first checkpoint)
            self.log.truncate_after(-1 if state is None else state["epoch"])
        return state

    def log_epoch(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def _check_same_run(self, ran: dict[str, Any]) -> None:
        """``ran``, the config the directory's run was trained under, must be this one; only
        the speed levers, which change how fast a run goes and not what it computes, may
        differ (a run may go on where a lever cannot: another machine, or a capture torch
        refused)."""
        now = yaml.safe_load(to_yaml(self.cfg))
        differ = _differences({**ran, "speed": None}, {**now, "speed": None})
        if differ:
            raise ConfigError(
                f"out_dir: {self.path} holds a run with another config ({'; '.join(differ)})"
                ": use a new out_dir, or the same config (and overrides) to resume it"
            )
        if ran.get("speed") != now["speed"] and self.main:
            self.console.print(f"resuming with other speed settings: {now['speed']}")

    def finished_results(self) -> dict[str, Any] | None:
        """The results.json of a run whose every epoch is trained, or None where its final
        evaluation has still to run (a run stopped during it)."""
        results = read_results(self.path)
        if results is not None and self.main:
            self.console.print(
                f"{self.path} is finished (all {self.cfg.epochs} epochs): its results are in "
                f"{self.path / 'results.json'}; to evaluate it again, run `fastrft eval "
                f"{self.path}`",
                markup=False,
                highlight=False,
            )
        return results

    def write_results(self, results: dict[str, Any]) -> None:
        if not self.main:
            return
        path = self.path / "results.json"
        write_json(path, results)
        self.console.print(
            f"clean {results['clean_acc']:.2%}  adv {results['adv_acc']:.2%}"
            f"  E.adv {results['expected_robustness']:.2%}  -> {path}"
        )


def _differences(ran: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Each dotted key whose value differs between two configs, with both values."""
    out = []
    for key in [*ran, *(k for k in now if k not in ran)]:
        a, b = ran.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            why = EPOCHS_FIXED if f"{prefix}{key}" == "epochs" else ""
            out.append(f"{prefix}{key} is {json.dumps(a)} in the run, {json.dumps(b)} here{why}")
    return out
