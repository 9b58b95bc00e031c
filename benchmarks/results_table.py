"""The README's table of the latest `fastrft bench` results, from their JSON files.

    python benchmarks/results_table.py benchmarks/results/bench-*.json

One markdown table for training-step ladders (the top rung against the baseline and the
limit) and one for attack mode (fastrft against AutoAttack's APGD-CE), with each result's
targets as it recorded them. Files that are not `fastrft bench --json` results are named on
stderr and left out; the exit code is 1 if none was usable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

AUTOATTACK = "AutoAttack APGD-CE"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _where(r: dict[str, Any]) -> str:
    env = r["environment"]
    return f"{env['device']}, {env['date'][:10]}"


def _targets(r: dict[str, Any]) -> str:
    checks = r.get("targets") or []
    return "; ".join(f"{c['what']} {c['wanted']}: {c['verdict']}" for c in checks) or "—"


def train_row(r: dict[str, Any]) -> list[str]:
    rows = [x for x in r["rows"] if x.get("images_per_s")]  # timed (not failed or skipped)
    base = next((x for x in rows if x["rung"] == 0), None)
    top = rows[-1]
    proj = r.get("projection")
    return [
        r["workload"]["describe"],
        _where(r),
        _num(base["images_per_s"] if base else None, ",.0f"),
        f"{top['rung']}: {top['name']}",
        _num(top["images_per_s"], ",.0f"),
        _num(top.get("speedup"), ".2f") + "x",
        _num(top.get("fraction_of_limit"), ".0%"),
        _num(proj["fix_s"] / 60 if proj else None, ".1f"),
        _targets(r),
    ]


def attack_row(r: dict[str, Any]) -> list[str]:
    rows = {x["name"].split(" (")[0]: x for x in r["rows"]}
    eager, fast = rows.get("fastrft fp32 eager"), rows.get("fastrft fast path")
    peer = rows.get(AUTOATTACK)

    def over(row: dict[str, Any] | None) -> str:
        if not (row and peer):
            return "—"
        return f"{row['images_per_s'] / peer['images_per_s']:.2f}x"

    def acc(row: dict[str, Any] | None) -> str:
        return _num(row["robust_acc"] * 100 if row else None, ".1f")

    return [
        r["workload"]["describe"],
        _where(r),
        _num(peer["images_per_s"] if peer else None, ",.0f"),
        over(eager),
        over(fast),
        f"{acc(fast)} / {acc(peer)}",
        _targets(r),
    ]


TRAIN_HEADER = [
    "workload",
    "device, date",
    "baseline img/s",
    "top rung",
    "img/s",
    "x baseline",
    "of limit",
    "whole run, min",
    "targets",
]
ATTACK_HEADER = [
    "workload",
    "device, date",
    f"{AUTOATTACK} img/s",
    "fastrft fp32 eager",
    "fastrft fast path",
    "robust acc % (fast / AutoAttack)",
    "targets",
]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def tables(results: list[dict[str, Any]]) -> str:
    train = [train_row(r) for r in results if r["mode"] == "train" and r["rows"]]
    attack = [attack_row(r) for r in results if r["mode"] == "attack" and r["rows"]]
    parts = []
    if train:
        parts.append(markdown(TRAIN_HEADER, train))
    if attack:
        parts.append(markdown(ATTACK_HEADER, attack))
    return "\n\n".join(parts)


def load(paths: list[Path]) -> list[dict[str, Any]]:
    results = []
    for path in paths:
        try:
            r = json.loads(path.read_text())
            if r["mode"] not in ("train", "attack") or not isinstance(r["rows"], list):
                raise KeyError("mode")
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"{path}: not a `fastrft bench --json` result ({err}); left out", file=sys.stderr)
            continue
        results.append(r)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="fastrft bench --json files")
    results = load(p.parse_args(argv).results)
    if not results:
        print("no usable results", file=sys.stderr)
        return 1
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
