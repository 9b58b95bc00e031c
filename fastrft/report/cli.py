"""`fastrft report RUNS_DIR [--out DIR]`: the paper's tables, win counts, paired t-tests and
figures from finished runs, gathered in OUT/report.md, with OUT/results.csv for other tools.

RUNS_DIR is a sweep's root (its ledger names the runs) or any folder of run directories.
Partial sweeps work: a cell without a finished run shows as missing. A results.json that
cannot be read is named in a warning line on stderr, its run listed as "results unreadable"
(exit code 0: the other runs' report stands).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .cells import BASELINE, BISECTED, build_grid, eps_label
from .collect import RunRecord, collect
from .figures import draw
from .stats import compare
from .tables import comparison_table, results_tables, unfinished_table, write_csv


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft report",
        description="Tables (Clean / Adv / E.adv per backbone, dataset and budget, RFT-fix "
        "against each schedule), win counts, paired t-tests and figures from run directories, "
        "gathered in OUT/report.md; one row per run in OUT/results.csv.",
    )
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="a sweep's root or a folder of runs")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="where the report goes (default RUNS_DIR/report)"
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    runs_dir = Path(args.runs_dir)
    records = collect(runs_dir)
    for r in records:
        if r.problem:
            print(f"fastrft report: warning: {r.problem}; listed as {r.state!r}", file=sys.stderr)
    out = args.out or runs_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    text = render(runs_dir, records, out)
    (out / "report.md").write_text(text)
    print(text.split("\n## Figures")[0].rstrip())
    print(f"\nreport: {out / 'report.md'}  (results.csv and figures beside it)")
    return 0


def render(runs_dir: Path, records: list[RunRecord], out: Path) -> str:
    """report.md's text; writes results.csv and the figures into ``out``."""
    grid = build_grid(records)
    write_csv(records, grid, out / "results.csv")
    finished = sum(r.results is not None for r in records)
    seeds = any(len(grid.runs(c, m)) > 1 for c in grid.configs for m in grid.methods)
    parts = [
        f"# fastrft report: {runs_dir}",
        f"{finished} runs with results, {len(records) - finished} without. Each cell: Clean / "
        "Adv / E.adv in % (clean accuracy, accuracy under attack at the run's eps_g, expected "
        f"robustness over [0, eps_g]); \u201c\u2014\u201d: no finished run."
        + (" Cells with several seeds show their mean (n seeds)." if seeds else ""),
        "## Results",
    ]
    tables = results_tables(grid)
    for eps, table in tables.items():
        parts += [f"### eps = {eps_label(eps)}", table]
    if any(BISECTED in table for table in tables.values()):
        parts.append(
            f"{BISECTED}: a run of the cell found its curve (so Adv and E.adv) by bisection "
            "(eval.strategy=bisect: each image's smallest broken budget); the other cells "
            "attacked every budget. results.csv names each run's strategy."
        )
    comparisons = compare(grid)
    if comparisons:
        parts += [
            f"## Against {BASELINE}",
            "Wins: configurations where the method beats RFT-fix. t, p: paired t-test across "
            "the configurations where both have results (n/a with fewer than 2, or no spread).",
            comparison_table(comparisons),
        ]
    parts += ["## Figures", *_figures(grid, out)]
    unfinished = unfinished_table(records)
    if unfinished:
        parts += ["## Runs without results", unfinished]
    parts.append("Per-run numbers: [results.csv](results.csv).")
    return "\n\n".join(parts) + "\n"


def _figures(grid, out: Path) -> list[str]:
    lines = []
    for config in grid.configs:
        acc, train = draw(grid, config, out)
        if acc is None:
            continue
        images = [f"![accuracy vs eps]({os.path.relpath(acc, out)})"]
        if train is not None:
            images.append(f"![training curves]({os.path.relpath(train, out)})")
        lines += [f"### {config.label()}", " ".join(images)]
    return lines
