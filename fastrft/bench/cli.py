"""The work of `fastrft bench` (its options, and what it measures: fastrft.bench.options)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from rich.console import Console

from fastrft import attack_registry as attacks
from fastrft.config import AttackConfig, ConfigError
from fastrft.engine.devices import make_current
from fastrft.engine.graphs import CaptureFailed

from .environment import environment
from .flops import step_flops
from .ladder import (
    RUNGS,
    Rung,
    Workload,
    largest_batch_that_fits,
    release,
    run_rung,
    runnable,
)
from .limit import measure_limit
from .options import parser
from .output import (
    add_comparison,
    load_result,
    print_result,
    write_csv,
    write_json,
    write_markdown,
)
from .presets import PRESETS, TARGETS
from .projection import RunShape, project
from .targets import ATTACK_KEYS, TRAIN_KEYS, checks_for

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
REPEAT_S = 1.0  # seconds of calls per timed repeat on a GPU, unless --iters is given
DEFAULTS: dict[str, Any] = {
    "attack": attacks.DEFAULT,
    "steps": 7,
    "eps": 4 / 255,
    "norm": "linf",
    "objective": "madry",
    "num_classes": 1000,
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA GPU; use --device cpu")
    make_current(device, "--device")
    return device


def resolve(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Explicit flags over the preset over the defaults."""
    preset = args.preset or ("tiny" if device.type == "cpu" and args.model is None else "resnet50")
    values = {**DEFAULTS, **PRESETS[preset], "preset": preset}
    for key in (
        "model",
        "img_size",
        "batch_size",
        "num_classes",
        "attack",
        "steps",
        "eps",
        "norm",
        "objective",
        "images",
        "epochs",
    ):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    for key in ("img_size", "batch_size", "num_classes", "steps"):
        if values[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {values[key]}")
    if values["objective"] == "trades" and not attacks.ATTACKS[values["attack"]].trades:
        trades = attacks.trades_attacks()
        raise ValueError(
            f"--objective trades crafts its examples with {attacks.join(trades).upper()}: "
            f"add --attack {trades[0]}"
        )
    return values


def resolve_targets(args: argparse.Namespace, preset: str) -> dict[str, float]:
    """The preset's targets for the mode, overridden by --target-* flags."""
    keys = TRAIN_KEYS if args.mode == "train" else ATTACK_KEYS
    given = {
        key: getattr(args, f"target_{key}")
        for key in {*TRAIN_KEYS, *ATTACK_KEYS}
        if getattr(args, f"target_{key}") is not None
    }
    for key, value in given.items():
        flag = f"--target-{key.replace('_', '-')}"
        if key not in keys:
            raise ValueError(f"{flag} is a target of the other mode, not of --mode {args.mode}")
        if value < 0 or (value == 0 and key != "acc_gap"):
            raise ValueError(f"{flag} must be positive, got {value:g}")
        if key == "limit" and value > 1:
            raise ValueError(f"{flag} is a fraction of the limit (e.g. 0.85), got {value:g}")
    if args.no_targets:
        return {}
    return {**TARGETS.get(preset, {}).get(args.mode, {}), **given}


def workload(values: dict[str, Any], args: argparse.Namespace, device: torch.device) -> Workload:
    try:
        attack = AttackConfig(
            name=values["attack"], eps=values["eps"], steps=values["steps"], norm=values["norm"]
        )
    except ConfigError as err:
        raise ValueError(str(err).replace("attack.", "--")) from None
    return Workload(
        model=values["model"],
        img_size=values["img_size"],
        batch_size=values["batch_size"],
        num_classes=values["num_classes"],
        attack=attack,
        objective=values["objective"],
        amp_dtype=AMP_DTYPES[args.amp_dtype],
        device=device,
        seed=args.seed,
        weights=args.weights,
    )


def parse_rungs(
    spec: str | None, device: torch.device, compile: bool
) -> tuple[list[Rung], list[str]]:
    """(rungs to run, notes on the ones left out). An explicit request the device or the
    flags cannot honour is an error; the default quietly leaves such rungs out."""
    skipped = {r.index: runnable(r, device) for r in RUNGS}
    if not compile:
        skipped[5] = skipped[5] or "--no-compile"
    if spec is None:
        chosen = [r.index for r in RUNGS]
    else:
        chosen = []
        try:
            for part in spec.split(","):
                lo, _, hi = part.partition("-")
                chosen += range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise ValueError(
                f"--rungs: expected numbers and ranges such as 0-7 or 0,4,7, got {spec!r}"
            ) from None
        bad = [i for i in chosen if not 0 <= i < len(RUNGS)]
        if bad:
            raise ValueError(
                f"--rungs: rung {bad[0]} does not exist; the rungs are 0-{len(RUNGS) - 1}"
            )
        refused = [i for i in chosen if skipped[i]]
        if refused:
            i = refused[0]
            raise ValueError(
                f"--rungs: rung {i} cannot run here ({skipped[i]}); leave it out of --rungs"
            )
    rungs = [RUNGS[i] for i in sorted(set(chosen)) if not skipped[i]]
    notes = [f"rung {i} skipped: {why}" for i, why in skipped.items() if why and spec is None]
    return rungs, notes


def timing_counts(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """measure()'s counts. On a GPU without --iters, a repeat stops after about a second of
    calls (at most 10), so slow baselines do not spend the machine's time."""
    gpu = device.type == "cuda"
    counts = {
        "warmup": args.warmup if args.warmup is not None else (3 if gpu else 1),
        "calls": args.iters if args.iters is not None else (10 if gpu else 2),
        "repeats": args.repeats if args.repeats is not None else (5 if gpu else 3),
        "repeat_s": REPEAT_S if gpu and args.iters is None else None,
    }
    if counts["warmup"] < 0 or counts["calls"] < 1 or counts["repeats"] < 1:
        raise ValueError("--warmup must be >= 0, --iters and --repeats >= 1")
    return counts


def run_ladder(
    w: Workload, rungs: list[Rung], counts: dict[str, int], console: Console, profile: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, list[str]]:
    """(one row per rung, the top rung's operator profile if asked for, notes on rungs
    whose CUDA graph torch could not capture)."""
    rows, ops, failed = [], None, []
    for rung in rungs:
        console.print(f"rung {rung.index}: {rung.name(w.amp_dtype)} ...", style="dim")
        top = profile and rung is rungs[-1]
        try:
            result = run_rung(rung, w, **counts, profile=top)
        except CaptureFailed as e:
            failed.append(f"rung {rung.index} failed: torch could not capture its graph ({e})")
            console.print(failed[-1], style="yellow")
            continue
        except torch.cuda.OutOfMemoryError:
            result = None  # searched below, once the traceback (holding the rung) is gone
        if result is None:
            raise out_of_memory(rung, w)
        rows.append(result.as_dict())
        ops = result.profile if top else ops
    return rows, ops, failed


def out_of_memory(rung: Rung, w: Workload) -> ValueError:
    """The error for a batch that does not fit, naming the largest that does."""
    release(w.device)
    fit = largest_batch_that_fits(rung, w)
    total = torch.cuda.get_device_properties(w.device).total_memory / 2**30
    hint = (
        f"the largest that fit: {fit}; rerun with -b {fit}" if fit else "not even a batch of 1 fits"
    )
    return ValueError(
        f"batch {w.batch_size} does not fit in the GPU's {total:.0f} GiB at rung "
        f"{rung.index} ({rung.name(w.amp_dtype)}): {hint}"
    )


TRAIN_COLUMNS = [
    ("rung", "name", ""),
    ("img/s", "images_per_s", ",.0f"),
    ("ms/step", "median_ms", ".1f"),
    ("p20-p80 ms", "spread", ""),
    ("peak GiB", "peak_memory_gib", ".1f"),
    ("x baseline", "speedup", ".2f"),
    ("of limit", "fraction_of_limit", ".0%"),
    ("TFLOP/s", "tflops", ".3g"),
    ("warm-up s", "warmup_s", ".1f"),
    ("W", "mean_power_w", ".0f"),
    ("J/img", "energy_per_image_j", ".3f"),
    ("SM MHz", "sm_clock_mhz", ".0f"),
    ("util %", "utilization_pct", ".0f"),
]


def finish_rows(rows: list[dict[str, Any]], floor_ms: float | None, flops: int) -> None:
    base = next((r["images_per_s"] for r in rows if r["rung"] == 0), None)
    for r in rows:
        r["tflops"] = flops / (r["median_ms"] / 1e3) / 1e12
        r["spread"] = f"{r['p20_ms']:.1f}-{r['p80_ms']:.1f}"
        r["speedup"] = r["images_per_s"] / base if base else None
        r["fraction_of_limit"] = floor_ms / r["median_ms"] if floor_ms else None


def train_notes(result: dict[str, Any], device: torch.device) -> list[str]:
    notes = list(result["skipped"])
    if device.type == "cpu":
        notes.append(
            "on a CPU, bf16 is mostly emulated and nothing is captured: the ladder and the "
            "limit check the machinery, they say nothing about a GPU"
        )
    notes.append(
        f"arithmetic: {result['flops_per_step'] / 1e9:,.3g} GFLOP per step (matrix products "
        "and convolutions of one eager step, forward and backward; TFLOP/s = that / step time)"
    )
    limit = result["limit"]
    if limit:
        kind = "compiled" if limit["compiled"] else "eager (--no-compile)"
        notes.append(
            f"limit ({kind}, {result['workload']['amp']}, channels_last): "
            f"T_train {limit['t_train_ms']:.2f} ms"
            f" + {limit['k_grad']} x T_grad {limit['t_grad_ms']:.2f} ms"
            + (f" + {limit['k_fwd']} x T_fwd {limit['t_fwd_ms']:.2f} ms" if limit["k_fwd"] else "")
            + f" = {limit['floor_ms']:.2f} ms per step"
        )
    proj = result.get("projection")
    if proj:
        notes.append(
            f"a run of {proj['images']:,} images x {proj['epochs']} epochs at the top rung's speed "
            f"(training only): RFT-fix {proj['fix_s'] / 60:.1f} min, Epsilon-Scheduling (hinge, "
            f"{proj['clean_epochs']} epochs at eps 0) {proj['hinge_s'] / 60:.1f} min"
        )
    return notes


def bench_train(
    args: argparse.Namespace, values: dict[str, Any], w: Workload, console: Console
) -> dict[str, Any]:
    rungs, skipped = parse_rungs(args.rungs, w.device, args.compile)
    counts = timing_counts(args, w.device)
    rows, ops, failed = run_ladder(w, rungs, counts, console, args.profile)
    console.print("counting the step's FLOPs ...", style="dim")
    flops = step_flops(w)  # one rung-0 step: it ran (fits) when rung 0 did
    limit = None
    if not args.no_limit:
        console.print("limit: T_train, T_grad, T_fwd ...", style="dim")
        limit = measure_limit(w, compile=args.compile, **counts).as_dict()
    finish_rows(rows, limit["floor_ms"] if limit else None, flops)
    projection = None
    if values.get("images") and values.get("epochs") and rows:
        top = rows[-1]
        shape = RunShape.paper(values["images"], values["epochs"])
        clean_ms = limit["t_train_ms"] if limit else None
        projection = {
            **vars(shape),
            **project(shape, top["images_per_s"], clean_ms, w.batch_size).as_dict(),
        }
    return {
        "rows": rows,
        "flops_per_step": flops,
        "limit": limit,
        "projection": projection,
        "skipped": skipped + failed,
        "timing": counts,
        "profile": ops,
    }


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The benchmark the parsed options ask for: print it, and write the files asked for."""
    # a file or a CI log gets the whole table rather than 80 squeezed columns
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    device = resolve_device(args.device)
    values = resolve(args, device)
    w = workload(values, args, device)
    targets = resolve_targets(args, values["preset"])
    if args.compare is not None:
        old = load_result(args.compare)  # a bad file fails now, not after minutes of timing
    if args.mode == "attack":
        from .attack import bench_attack, columns, notes

        part = bench_attack(args, w, console)
        cols, lines = columns(part), notes(part)
    else:
        part = bench_train(args, values, w, console)
        cols, lines = (
            TRAIN_COLUMNS,
            train_notes({**part, "workload": {"amp": args.amp_dtype}}, device),
        )
    result = {
        "mode": args.mode,
        "environment": environment(device),
        "workload": {**values, "amp": args.amp_dtype, "describe": w.describe()},
        **part,
    }
    checks = checks_for(args.mode, result, targets)
    result["targets"] = [c.as_dict() for c in checks]
    lines = [*lines, *(c.line() for c in checks)]
    if args.compare is not None:
        add_comparison(result["rows"], old)
        cols = [*cols, (f"vs {args.compare.name}", "vs_old", ".2f")]
    print_result(console, f"fastrft bench --mode {args.mode}", result, cols, lines)
    if args.json:
        write_json(result, args.json)
    if args.csv:
        write_csv(result["rows"], args.csv)
    if args.markdown:
        write_markdown(result, cols, lines, args.markdown)
    return 0
