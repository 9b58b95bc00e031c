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

from fastrft import atomic

Column = tuple[str, str, str]  # header, row key, format spec ("" for str())


def _cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec) if spec else str(value)


PROFILE_COLUMNS: list[Column] = [
    ("operator", "op", ""),
    ("self ms/step", "self_ms_per_step", ".2f"),
    ("share", "share", ".1%"),
    ("calls/step", "calls_per_step", ".0f"),
]


def _filled(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[Column]:
    """The columns some row has a value for (NVML's readings are None on a CPU, say)."""
    return [c for c in columns if any(row.get(c[1]) is not None for row in rows)]


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> Table:
    columns = _filled(rows, columns)
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
    if result.get("profile"):
        console.print(table("where the top rung's step goes", result["profile"], PROFILE_COLUMNS))


def _markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    columns = _filled(rows, columns)
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(k), f) for _, k, f in columns) + " |")
    return lines


def write_markdown(
    result: dict[str, Any], columns: Sequence[Column], notes: Sequence[str], path: Path
) -> None:
    """A short results file to commit: what ran where, the table, the notes."""
    env = result["environment"]
    lines = [
        f"# fastrft bench --mode {result['mode']}: {result['workload']['describe']}",
        "",
        f"- device: {env['device']}" + (f", driver {env['driver']}" if env.get("driver") else ""),
        f"- torch {env['torch']}, triton {env['triton']}, CUDA {env['cuda']}, "
        f"Python {env['python']}",
        f"- fp32 math: matmul precision {env.get('float32_matmul_precision')} (matmul TF32 "
        f"{'allowed' if env.get('matmul_allow_tf32') else 'off'}), cuDNN TF32 "
        f"{'allowed' if env.get('cudnn_allow_tf32') else 'off'} (torch's defaults unless changed; "
        "a strict fp32 row turns both off for itself)",
        f"- date: {env['date']}; commit: {env['git_commit']}",
        f"- command: `{env['command']}`",
        "",
        *_markdown_table(result["rows"], columns),
        "",
        *(f"- {note}" for note in notes),
    ]
    if result.get("profile"):
        lines += ["", "Where the top rung's step goes:", ""]
        lines += _markdown_table(result["profile"], PROFILE_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "\n".join(lines) + "\n")


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(result, indent=1) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
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
    (None where either result has no timed row of that name)."""
    before = {r.get("name"): r.get("images_per_s") for r in old["rows"]}
    for row in rows:
        prev, now = before.get(row["name"]), row.get("images_per_s")
        row["vs_old"] = now / prev if prev and now else None
