"""The work of `fastrft bench` (its options, and what it measures: fastrft.bench.options): the
workload from its config, the device, the targets, then the mode's measurement and output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console

from fastrft.engine.devices import pick_device
from fastrft.engine.distributed import Dist

from .config import BenchConfig, default_preset, load_bench_config
from .environment import environment
from .ladder import Workload
from .options import parser
from .output import (
    Column,
    add_comparison,
    load_result,
    print_result,
    write_csv,
    write_json,
    write_markdown,
)
from .projection import RunShape
from .targets import ATTACK_KEYS, TRAIN_KEYS, checks_for, target_problem
from .train import TRAIN_COLUMNS, bench_train, train_notes

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Save = Callable[[dict[str, Any]], None]  # writes the part measured so far


def resolve_targets(args: argparse.Namespace, preset: dict[str, float]) -> dict[str, float]:
    """The mode's targets of the config (``preset``), overridden by --target-* flags."""
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
        problem = target_problem(key, value)
        if problem:
            raise ValueError(f"{flag} {problem}")
    if args.no_targets:
        return {}
    return {**preset, **given}


def config_targets(cfg: BenchConfig, mode: str) -> dict[str, float]:
    """The targets the config sets for ``mode``."""
    section = cfg.targets.train if mode == "train" else cfg.targets.attack
    return {key: value for key, value in vars(section).items() if value is not None}


def workload(cfg: BenchConfig, args: argparse.Namespace, device: torch.device) -> Workload:
    return Workload(
        model=cfg.model.name,
        img_size=cfg.data.img_size,
        batch_size=cfg.data.batch_size,
        num_classes=cfg.model.num_classes,
        attack=cfg.attack,
        objective=cfg.objective.name,
        amp_dtype=AMP_DTYPES[args.amp_dtype],
        device=device,
        seed=cfg.seed,
        weights=cfg.model.weights,
    )


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_intermixed_args(argv))


def run(args: argparse.Namespace) -> int:
    """The benchmark the parsed options ask for: print it, and write the files asked for,
    also after each rung or row, and with the error of an exception that ends it."""
    # a file or a CI log gets the whole table rather than 80 squeezed columns
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    preset = args.preset or default_preset(args.overrides, torch.cuda.is_available())
    cfg = load_bench_config(preset, args.overrides)
    device = pick_device(cfg.device, Dist())  # as training picks it, and checks it
    w = workload(cfg, args, device)
    targets = resolve_targets(args, config_targets(cfg, args.mode))
    if args.compare is not None:
        old = load_result(args.compare)  # a bad file fails now, not after minutes of timing
    env = environment(device)
    record = {**cfg.record(preset), "amp": args.amp_dtype, "describe": w.describe()}

    def assemble(part: dict[str, Any]) -> dict[str, Any]:
        return {"mode": args.mode, "environment": env, "workload": record, **part}

    if args.mode == "attack":
        from .attack import bench_attack, columns, notes

        def measure(save: Save) -> dict[str, Any]:
            return bench_attack(args, w, console, save)

        def layout(part: dict[str, Any]) -> tuple[list[Column], list[str]]:
            return columns(part), notes(part)
    else:
        shape = RunShape.paper(cfg.images, cfg.epochs) if cfg.images and cfg.epochs else None

        def measure(save: Save) -> dict[str, Any]:
            return bench_train(args, shape, w, console, save)

        def layout(part: dict[str, Any]) -> tuple[list[Column], list[str]]:
            return TRAIN_COLUMNS, train_notes({**part, "workload": {"amp": args.amp_dtype}}, device)

    latest: dict[str, Any] = {}

    def save(part: dict[str, Any]) -> None:
        latest.update(part, complete=False)
        write_files(args, assemble(latest), *layout(latest))

    try:
        part = measure(save)
    except Exception as e:
        if latest:  # what was measured stays on disk, with why the run ended
            ended = f"ended by {type(e).__name__}: {e}"
            latest["skipped"] = [*latest.get("skipped", []), ended]
            save({"error": f"{type(e).__name__}: {e}"})
        raise
    cols, lines = layout(part)
    result = assemble({**part, "complete": True})
    checks = checks_for(args.mode, result, targets)
    result["targets"] = [c.as_dict() for c in checks]
    lines = [*lines, *(c.line() for c in checks)]
    if args.compare is not None:
        add_comparison(result["rows"], old)
        cols = [*cols, (f"vs {args.compare.name}", "vs_old", ".2f")]
    print_result(console, f"fastrft bench --mode {args.mode}", result, cols, lines)
    write_files(args, result, cols, lines)
    return 0


def write_files(
    args: argparse.Namespace, result: dict[str, Any], cols: list[Column], lines: list[str]
) -> None:
    """The JSON, CSV and markdown files asked for, each written whole (fastrft.atomic)."""
    if args.json:
        write_json(result, args.json)
    if args.csv:
        write_csv(result["rows"], args.csv)
    if args.markdown:
        write_markdown(result, cols, lines, args.markdown)
