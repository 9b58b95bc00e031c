"""The report's tables as markdown (the paper's layout: a cell is Clean / Adv / E.adv in %,
"—" where no run finished) and its per-run CSV for other tools (empty where no result)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .cells import BASELINE, BISECTED, METRICS, Grid, eps_label, strategy_of
from .collect import RunRecord
from .stats import Comparison

MISSING = "—"
CSV_RESULTS = ("clean_acc", "adv_acc", "expected_robustness", "delay_time", "epochs")


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def results_tables(grid: Grid) -> dict[float, str]:
    """One table per budget: a row per configuration, a column per method."""
    out = {}
    for eps in sorted({c.eps for c in grid.configs}):
        rows = []
        for config in (c for c in grid.configs if c.eps == eps):
            cells = []
            for method in grid.methods:
                values = [grid.value(config, method, key) for key in METRICS.values()]
                seeds = len(grid.runs(config, method))
                cell = MISSING if values[0] is None else " / ".join(map(_pct, values))
                cell += BISECTED if grid.bisected(config, method) else ""
                cells.append(cell + (f" (n={seeds})" if seeds > 1 else ""))
            rows.append([config.backbone, config.dataset, *(v for _, v in config.extra), *cells])
        header = ["backbone", "dataset", *grid.extra_keys, *grid.methods]
        out[eps] = _markdown(header, rows)
    return out


def comparison_table(comparisons: Sequence[Comparison]) -> str:
    rows = [
        [
            eps_label(c.eps),
            f"{c.method} vs {BASELINE}",
            c.metric,
            f"{c.wins} of {c.pairs}",
            str(c.ties),
            str(c.losses),
            MISSING if c.mean_diff is None else f"{100 * c.mean_diff:+.2f}",
            "n/a" if c.t is None else f"{c.t:.2f}",
            "n/a" if c.p is None else f"{c.p:.2g}",
        ]
        for c in comparisons
    ]
    header = ["eps", "methods", "metric", "wins", "ties", "losses", "mean diff (pts)", "t", "p"]
    return _markdown(header, rows)


def unfinished_table(records: Sequence[RunRecord]) -> str:
    rows = [[f"`{r.name}`", r.state] for r in records if r.results is None]
    return _markdown(["run", "state"], rows) if rows else ""


def write_csv(records: Sequence[RunRecord], grid: Grid, path: Path) -> None:
    """One row per run: its labels, the keys that set it apart, its numbers."""
    header = ["run", "state", "backbone", "dataset", "eps", "method", "seed"]
    header += [*grid.extra_keys, *CSV_RESULTS, "strategy"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in records:
            config = grid.row_of.get(r.name)
            labels = ["", "", "", "", ""]
            if config is not None:
                seed = r.config.get("seed", "")
                labels = [config.backbone, config.dataset, config.eps, r.method, seed]
            extra = [dict(config.extra).get(k, "") if config else "" for k in grid.extra_keys]
            numbers = [(r.results or {}).get(k, "") for k in CSV_RESULTS]
            strategy = "" if r.results is None else strategy_of(r.results)
            writer.writerow([r.name, r.state, *labels, *extra, *numbers, strategy])
