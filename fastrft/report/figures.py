"""The report's figures, drawn by fastrft.report.plots: per configuration, accuracy against the
budget and the validation accuracy per epoch, one line per method (seeds averaged)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .cells import Config, Grid
from .collect import RunRecord
from .plots import plot_accuracy_curves, plot_training_curves

TRAINING = {"clean": "val_clean_acc", "adv": "val_adv_acc"}


def _mean(rows: Sequence[Sequence[float]]) -> list[float]:
    """Element-wise mean over the common length of several curves."""
    n = min(len(r) for r in rows)
    return [sum(r[i] for r in rows) / len(rows) for i in range(n)]


def accuracy_curve(runs: Sequence[RunRecord]) -> tuple[list[float], list[float]]:
    """A cell's accuracy against eps (its runs share their eval grid: they differ by seed)."""
    curve = _mean([r.results["accuracy_curve"] for r in runs])
    return runs[0].results["eps_grid"][: len(curve)], curve


def training_curve(runs: Sequence[RunRecord], key: str) -> tuple[list[int], list[float]] | None:
    rows = [[m[key] for m in r.metrics if key in m] for r in runs]
    if not all(rows):
        return None
    values = _mean(rows)
    epochs = [m["epoch"] for m in runs[0].metrics if key in m]
    return epochs[: len(values)], values


def draw(grid: Grid, config: Config, out: Path) -> tuple[Path | None, Path | None]:
    """The two figures of one configuration (None where no method has finished)."""
    methods = [m for m in grid.methods if grid.runs(config, m)]
    if not methods:
        return None, None
    curves = {m: accuracy_curve(grid.runs(config, m)) for m in methods}
    acc = plot_accuracy_curves(
        curves, out / "curves" / f"{config.slug()}.png", eps_g=config.eps, title=config.label()
    )
    training = {}
    for m in methods:
        for name, key in TRAINING.items():
            curve = training_curve(grid.runs(config, m), key)
            if curve is not None:
                training[f"{m} {name}"] = curve
    train = None
    if training:
        train = plot_training_curves(
            training,
            out / "training" / f"{config.slug()}.png",
            ylabel="validation accuracy (%)",
            title=config.label(),
        )
    return acc, train
