"""Bench results out: a rich table on the terminal, JSON and CSV files, and the change
against an earlier result (--compare)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

Column = tuple[str, str, str]  # header, row key, format spec ("" for str())


def _cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec) if spec else str(value)


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> Table:
    """The rows under the given columns, leaving out columns no row has a value for (NVML's
    readings on a CPU, say)."""
    columns = [c for c in columns if any(row.get(c[1]) is not None for row in rows)]
    t = Table(title=title, title_justify="left")
    for i, (header, _, _) in enumerate(columns):
        t.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(_cell(row.get(key), spec) for _, key, spec in columns))
    return t


def print_result(
    console: Console,
    title: str,
    result: dict[str, Any],
    columns: Sequence[Column],
    notes: Sequence[str],
) -> None:
    env = result["environment"]
    console.print(
        f"[bold]{title}[/]  {env['device']} · torch {env['torch']} · triton {env['triton']}"
        + (f" · driver {env['driver']}" if env.get("driver") else "")
    )
    console.print(table(result["workload"]["describe"], result["rows"], columns))
    for note in notes:
        console.print(note)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def load_result(path: Path) -> dict[str, Any]:
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--compare: {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--compare: {path} is not JSON ({err})") from None
    if not isinstance(old, dict) or not isinstance(old.get("rows"), list):
        raise ValueError(f"--compare: {path} is not a `fastrft bench --json` result")
    return old


def add_comparison(rows: list[dict[str, Any]], old: dict[str, Any]) -> None:
    """Set each row's "vs_old" to its images/s over the same-named row of an earlier result
    (None where the earlier result has no such row)."""
    before = {r.get("name"): r.get("images_per_s") for r in old["rows"]}
    for row in rows:
        prev = before.get(row["name"])
        row["vs_old"] = row["images_per_s"] / prev if prev else None
