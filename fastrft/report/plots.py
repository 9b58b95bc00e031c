"""The figures fastrft writes: accuracy-vs-eps curves and per-epoch training curves.

Used by `fastrft report` (fastrft.report.figures) and by the demo's report
(fastrft.report.demo). matplotlib runs headless (Agg) and is imported only when a figure is
drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = tuple[Sequence[float], Sequence[float]]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4), dpi=120)


def _save(plt, fig, ax, path: Path | str, title: str) -> Path:
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_accuracy_curves(
    curves: Mapping[str, Curve], path: Path | str, *, eps_g: float | None = None, title: str = ""
) -> Path:
    """Robust accuracy against the budget, one line per label.

    `curves` maps a label to (eps grid in pixel units, accuracies in [0, 1]); the x axis is
    drawn in units of 1/255 and a dashed line marks the target budget eps_g when given.
    """
    plt, fig, ax = _figure()
    for label, (eps, acc) in curves.items():
        ax.plot([e * 255 for e in eps], [100 * a for a in acc], marker=".", label=label)
    if eps_g is not None:
        ax.axvline(eps_g * 255, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("eps (x/255)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    return _save(plt, fig, ax, path, title)


def plot_training_curves(
    curves: Mapping[str, Curve], path: Path | str, *, ylabel: str, title: str = ""
) -> Path:
    """A per-epoch quantity (for example clean validation accuracy), one line per run.

    `curves` maps a label to (epochs, values); values in [0, 1] are drawn as percentages
    when `ylabel` ends in "(%)".
    """
    plt, fig, ax = _figure()
    scale = 100 if ylabel.endswith("(%)") else 1
    for label, (epochs, values) in curves.items():
        ax.plot(list(epochs), [scale * v for v in values], marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    return _save(plt, fig, ax, path, title)
