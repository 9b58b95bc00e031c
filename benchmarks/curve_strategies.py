"""The accuracy-vs-eps curve by both strategies side by side: wall time, attack calls and
gradient passes of each, and how far bisection's curve lies from attacking every budget.

    python benchmarks/curve_strategies.py                          # a small CNN, trained here
    python benchmarks/curve_strategies.py RUN_DIR ... --eps-max 64/255 --grid-step 4/255

Without run directories: a TinyCNN (fastrft.toy) trained for a few epochs on the toy task, its
curve over 0..16/255 (step 1/255, 16 attacked budgets) under APGD-CE-10 on 256 held-out images
in batches of 64, seeded (E.adv up to eps_g = 8/255): about a minute on two CPU cores. With
run directories: each run as `fastrft eval RUN --strategy all|bisect` evaluates it (its
validation split, seed and eval.* settings; --eps-max and --grid-step set the grid, default
0..16/255 in steps of 1/255), on the CPU unless --device says otherwise. Prints one markdown
table; --json writes every number. Gaps are in points (percent): the largest |bisect - all|
over the grid and where, and E.adv's, over the whole grid and up to the run's attack.eps. Times
are one run each, the process's CPU seconds and the host clock's wall seconds (on a shared
machine the CPU time is the fairer): a measurement, not a test.

The yardstick for those gaps is the evaluation's own noise: "all" once more under another seed
(the random starts' key, seed + 1), and the same gaps between its two curves. Both strategies
key each image's start by (seed, its index), so under one seed they attack every (image,
budget) pair they share from the same start: their gap is the attack's non-monotonicity alone.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from fastrft.budgets import CURVE_STRATEGIES, fraction_arg
from fastrft.evaluate import eps_grid, expected_robustness, measure_curve

TOY = {"train": 2048, "held_out": 256, "epochs": 4, "batch": 64, "steps": 10, "seed": 0}
# (name, strategy, offset of the seed): both strategies, then "all" under the next seed
MEASURES = [*((strategy, strategy, 0) for strategy in CURVE_STRATEGIES), ("reseeded", "all", 1)]


class Clock:
    """Wall and CPU seconds since it was made: on a shared machine the CPU time (this process's
    threads) says more than the wall time."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {
            "wall_s": time.perf_counter() - self.wall,
            "cpu_s": time.process_time() - self.cpu,
        }


def toy_curves(eps_max: float, step: float) -> dict[str, Any]:
    """Both strategies' curves for a TinyCNN trained here (standard training: not robust)."""
    from fastrft.toy import TinyCNN, toy_images, train_toy

    torch.manual_seed(TOY["seed"])
    n = TOY["train"]
    x, y = toy_images(n + TOY["held_out"], seed=TOY["seed"])
    model = train_toy(TinyCNN(), x[:n], y[:n], epochs=TOY["epochs"])
    batches = list(zip(x[n:].split(TOY["batch"]), y[n:].split(TOY["batch"]), strict=True))
    grid = eps_grid(eps_max, step)
    out: dict[str, Any] = {"model": f"TinyCNN, toy task ({TOY['epochs']} epochs)", "grid": grid}
    for name, strategy, seed in MEASURES:
        clock = Clock()
        curve = measure_curve(
            model, batches, grid, steps=TOY["steps"], strategy=strategy, seed=TOY["seed"] + seed
        )
        out[name] = {
            **clock.read(),
            "curve": curve.accuracies,
            "attack_calls": curve.attack_calls,
            "gradient_passes": curve.gradient_passes,
        }
    out["eps_g"] = 8 / 255  # the paper's l_inf budget: E.adv up to it
    return out


def run_curves(run: Path, eps_max: float, step: float, device: str) -> dict[str, Any]:
    """Both strategies' curves for a saved run, as `fastrft eval` makes them."""
    from fastrft.engine.evaluation import evaluate_checkpoint

    out: dict[str, Any] = {"model": str(run)}
    seed = None  # the run's, read from the first evaluation
    for name, strategy, offset in MEASURES:
        clock = Clock()
        results = evaluate_checkpoint(
            run,
            eps_max=eps_max,
            grid_step=step,
            strategy=strategy,
            seed=None if seed is None else seed + offset,
            overrides=[f"device={device}"],
        )
        seed = results["seed"] if seed is None else seed
        out[name] = {
            **clock.read(),
            "curve": results["accuracy_curve"],
            "attack_calls": results["attack_calls"],
            "gradient_passes": results["gradient_passes"],
        }
        out["grid"], out["eps_g"] = results["eps_grid"], results["eps"]
    return out


def gaps(grid: list[float], eps_g: float, a: list[float], b: list[float]) -> dict[str, float]:
    """Curve b against curve a: the largest gap and where, E.adv's gap over the grid and up to
    eps_g, in points."""
    gap = [abs(y - x) for x, y in zip(a, b, strict=True)]
    worst = max(range(len(gap)), key=gap.__getitem__)
    upto = 1 + next(k for k, e in enumerate(grid) if math.isclose(e, eps_g))

    def e_adv_gap(n: int) -> float:
        e_a, e_b = (expected_robustness(grid[:n], c[:n]) for c in (a, b))
        return 100 * abs(e_b - e_a)

    return {
        "max_gap_pts": 100 * gap[worst],
        "max_gap_at_255": grid[worst] * 255,
        "e_adv_gap_pts": e_adv_gap(len(grid)),
        "e_adv_g_gap_pts": e_adv_gap(upto),
    }


def compare(m: dict[str, Any]) -> dict[str, Any]:
    """Bisection against "all", and "all" against itself under another seed (the noise): the
    gaps, the passes' ratio, the speed-ups."""
    every, grid, eps_g = m["all"]["curve"], m["grid"], m["eps_g"]
    return {
        **gaps(grid, eps_g, every, m["bisect"]["curve"]),
        "noise": gaps(grid, eps_g, every, m["reseeded"]["curve"]),
        "passes_ratio": m["bisect"]["gradient_passes"] / m["all"]["gradient_passes"],
        "speed_up_wall": m["all"]["wall_s"] / m["bisect"]["wall_s"],
        "speed_up_cpu": m["all"]["cpu_s"] / m["bisect"]["cpu_s"],
    }


def table(measured: list[dict[str, Any]]) -> str:
    header = (
        "| model | budgets | passes all / bisect (ratio) | CPU s all / bisect | wall s all / "
        "bisect | bisect vs all: largest gap (pts, at eps) | E.adv gap (pts): grid / eps_g | "
        "all vs all, seed + 1: largest gap | E.adv gap: grid / eps_g |"
    )
    lines = [header, "|" + " --- |" * 9]
    for m in measured:
        c, a, b = m["comparison"], m["all"], m["bisect"]
        lines.append(
            f"| {m['model']} | {len(m['grid']) - 1} up to {m['grid'][-1] * 255:g}/255 | "
            f"{a['gradient_passes']} / {b['gradient_passes']} ({c['passes_ratio']:.2f}) | "
            f"{a['cpu_s']:.1f} / {b['cpu_s']:.1f} | {a['wall_s']:.1f} / {b['wall_s']:.1f} | "
            f"{described(c)} | {described(c['noise'])} |"
        )
    return "\n".join(lines)


def described(g: dict[str, float]) -> str:
    """Two cells: the largest gap and where, E.adv's gaps."""
    return (
        f"{g['max_gap_pts']:.2f} at {g['max_gap_at_255']:g}/255 | "
        f"{g['e_adv_gap_pts']:.2f} / {g['e_adv_g_gap_pts']:.2f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories (default: a toy CNN)")
    p.add_argument("--eps-max", type=fraction_arg, default=16 / 255)
    p.add_argument("--grid-step", type=fraction_arg, default=1 / 255)
    p.add_argument("--device", default="cpu", help="for run directories (default cpu)")
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args()
    measured = (
        [run_curves(r, args.eps_max, args.grid_step, args.device) for r in args.runs]
        if args.runs
        else [toy_curves(args.eps_max, args.grid_step)]
    )
    for m in measured:
        m["comparison"] = compare(m)
    print(table(measured))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
