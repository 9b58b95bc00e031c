"""The report figures: written as real PNGs, with one line per curve."""

import matplotlib
import pytest

from fastrft.report.plots import plot_accuracy_curves, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _lines_drawn(monkeypatch) -> list:
    """Collect the Axes.plot calls a figure makes."""
    import matplotlib.axes

    calls = []
    original = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        calls.append((args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    return calls


def test_accuracy_curves_png(tmp_path, monkeypatch):
    calls = _lines_drawn(monkeypatch)
    curves = {"fix": ([0, 4 / 255, 8 / 255], [0.9, 0.6, 0.3]), "hinge": ([0, 8 / 255], [0.95, 0.2])}
    out = plot_accuracy_curves(curves, tmp_path / "sub" / "curves.png", eps_g=8 / 255, title="t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [c[1]["label"] for c in calls] == ["fix", "hinge"]
    xs, ys = calls[0][0]
    assert xs == pytest.approx([0, 4, 8]) and ys == pytest.approx([90, 60, 30])
    assert matplotlib.get_backend().lower() == "agg"


def test_training_curves_scale_percent_only_when_asked(tmp_path, monkeypatch):
    calls = _lines_drawn(monkeypatch)
    plot_training_curves({"a": ([0, 1], [0.5, 0.75])}, tmp_path / "acc.png", ylabel="acc (%)")
    plot_training_curves({"a": ([0, 1], [2.0, 1.5])}, tmp_path / "loss.png", ylabel="loss")
    assert calls[0][0][1] == pytest.approx([50, 75])
    assert calls[1][0][1] == pytest.approx([2.0, 1.5])
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC
