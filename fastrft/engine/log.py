"""Where a run's numbers go: JSON lines always, TensorBoard when installed, a progress bar
on the terminal (rich)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (and scalars to TensorBoard)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard = run_dir / "tensorboard" if tensorboard else None
        self.writer = None

    def _open_writer(self) -> None:
        """TensorBoard's writer, made at the first record: a run that writes none (a finished
        one, rerun) leaves no empty event file behind."""
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.tensorboard))
        except ImportError:  # tensorboard is an optional extra
            self.tensorboard = None

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is None and self.tensorboard is not None:
            self._open_writer()
        if self.writer is not None:
            step = record.get("epoch", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (written by a run that then crashed)."""
        kept = [r for r in self.read() if r.get("epoch", -1) <= epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "eps {task.fields[eps]} loss {task.fields[loss]} acc {task.fields[acc]} "
            "{task.fields[rate]} img/s"
        ),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


@contextmanager
def counted(
    console: Console, enabled: bool, what: str
) -> Iterator[Callable[[int, int | None], None]]:
    """A bar for a job counted in long units (``what``: "eval, batches"), and the function
    to call with (done, total) as each unit ends: each call redraws the bar, since a unit
    (an attacked batch, an AutoAttack budget) can take longer than a refresh tick."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )
    with bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total, refresh=True)
