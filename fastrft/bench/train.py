"""`fastrft bench --mode train`: the ladder's rungs timed one by one, the limit, the run
projected at the top rung's speed, and the table and notes they print as."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console

from fastrft.engine.graphs import CaptureFailed

from .flops import counted_rung, step_flops
from .ladder import (
    RUNGS,
    STRICT_NAME,
    Rung,
    Workload,
    largest_batch_that_fits,
    release,
    run_rung,
    runnable,
)
from .limit import measure_limit
from .projection import RunShape, project

REPEAT_S = 1.0  # seconds of calls per timed repeat on a GPU, unless --iters is given


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


Part = dict[str, Any]  # the result so far: rows, notes ("skipped"), limit, profile, ...
Save = Callable[[Part], None]


def captures(rung: Rung) -> bool:
    """Whether the rung captures CUDA graphs: a refused capture may leave torch's process
    mid-capture, so such rungs run last, after the limit, and stop at the first refusal."""
    return rung.has("graphs")


ORDER_NOTE = (
    "order: rungs without CUDA graphs, then the limit, then the rungs that capture (in the "
    "same process); after a refused capture the later capturing rungs are skipped, not timed"
)


def rows_to_time(rungs: list[Rung]) -> list[tuple[Rung, bool]]:
    """(rung, strict fp32) per row: rung 0 twice, with PyTorch's defaults and then strict."""
    return [(r, strict) for r in rungs for strict in (False, True) if not strict or r.index == 0]


def run_ladder(
    w: Workload,
    rungs: list[Rung],
    counts: dict[str, Any],
    console: Console,
    part: Part,
    save: Save,
    profile_rung: int | None,
    refused: int | None = None,
) -> int | None:
    """Time ``rungs`` one by one into ``part`` (its "rows" and "skipped" notes), saving it after
    each. A refused capture and any other error of a rung are recorded (row and note) and the
    ladder goes on, except that no rung captures again after a refused capture; an
    out-of-memory error is recorded, then ends the run with the largest batch that fits.
    Returns the rung whose capture was refused (``refused``, an earlier one, if none here)."""
    for rung, strict in rows_to_time(rungs):
        name = STRICT_NAME if strict else rung.name(w.amp_dtype)
        console.print(f"rung {rung.index}: {name} ...", style="dim")
        row: dict[str, Any] = {"rung": rung.index, "name": name}
        if captures(rung) and refused is not None:
            row["skipped"] = f"a capture was refused earlier in this process (rung {refused})"
            part["rows"].append(row)
            note(part, f"rung {rung.index} skipped: {row['skipped']}", console, save)
            continue
        oom, top = False, rung.index == profile_rung and not strict
        try:
            result = run_rung(rung, w, **counts, profile=top, strict=strict)
        except CaptureFailed as e:
            refused = rung.index
            row["error"] = f"torch could not capture its graph ({e})"
        except torch.cuda.OutOfMemoryError as e:
            row["error"], oom = f"out of memory ({e})", True
        except Exception as e:  # recorded, and the next rung builds its own model afresh
            row["error"] = f"{type(e).__name__}: {e}"
        else:
            row = result.as_dict()
            part["profile"] = result.profile if top else part["profile"]
        part["rows"].append(row)
        if "error" in row:
            note(part, f"rung {rung.index} failed: {row['error']}", console, save)
        else:
            save(part)
        if oom:  # searched here, once the traceback (holding the rung) is gone
            raise out_of_memory(rung, w)
    return refused


def note(part: Part, line: str, console: Console, save: Save) -> None:
    part["skipped"].append(line)
    console.print(line, style="yellow")
    save(part)


def out_of_memory(rung: Rung, w: Workload) -> ValueError:
    """The error for a batch that does not fit, naming the largest that does."""
    release(w.device)
    fit = largest_batch_that_fits(rung, w)
    total = torch.cuda.get_device_properties(w.device).total_memory / 2**30
    hint = (
        f"the largest that fit: {fit}; rerun with data.batch_size={fit}"
        if fit
        else "not even a batch of 1 fits"
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
    ("x strict fp32", "speedup_strict", ".2f"),
    ("of limit", "fraction_of_limit", ".0%"),
    ("TFLOP/s", "tflops", ".3g"),
    ("warm-up s", "warmup_s", ".1f"),
    ("W", "mean_power_w", ".0f"),
    ("J/img", "energy_per_image_j", ".3f"),
    ("SM MHz", "sm_clock_mhz", ".0f"),
    ("util %", "utilization_pct", ".0f"),
    ("failed", "error", ""),
    ("skipped", "skipped", ""),
]


def measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that were timed (not those that failed or were skipped)."""
    return [r for r in rows if "median_ms" in r]


def finish_rows(rows: list[dict[str, Any]], floor_ms: float | None, flops: dict[int, int]) -> None:
    """Each timed row's ratios: TFLOP/s from ``flops`` (per counted rung, see
    flops.counted_rung), speed-ups over both baselines, fraction of the limit."""
    timed_rows = measured(rows)
    base = {
        strict: next(
            (
                r["images_per_s"]
                for r in timed_rows
                if r["rung"] == 0 and r["strict_fp32"] == strict
            ),
            None,
        )
        for strict in (False, True)
    }
    for r in timed_rows:
        r["flops_per_step"] = flops.get(counted_rung(RUNGS[r["rung"]]).index)
        r["tflops"] = (
            r["flops_per_step"] / (r["median_ms"] / 1e3) / 1e12 if r["flops_per_step"] else None
        )
        r["spread"] = f"{r['p20_ms']:.1f}-{r['p80_ms']:.1f}"
        r["speedup"] = r["images_per_s"] / base[False] if base[False] else None
        r["speedup_strict"] = r["images_per_s"] / base[True] if base[True] else None
        r["fraction_of_limit"] = floor_ms / r["median_ms"] if floor_ms else None


def train_notes(result: dict[str, Any], device: torch.device) -> list[str]:
    notes = list(result["skipped"])
    if device.type == "cpu":
        notes.append(
            "on a CPU, bf16 is mostly emulated and nothing is captured: the ladder and the "
            "limit check the machinery, they say nothing about a GPU"
        )
    for rung, flops in sorted(result["flops_per_step"].items()):
        which = "the baseline's attack" if rung == 0 else "fastrft's attack"
        notes.append(
            f"arithmetic at rungs {rung}-{rung + 3} ({which}): {flops / 1e9:,.3g} GFLOP per step "
            f"(matrix products and convolutions of one eager step of rung {rung}, forward and "
            "backward; TFLOP/s = that / step time)"
        )
    if any(r.get("strict_fp32") for r in result["rows"]):
        notes.append(
            "rung 0 runs twice: with PyTorch's defaults (the speed-up's base) and in strict fp32 "
            "(TF32 off for matmuls and cuDNN during that row only; the x strict fp32 column's "
            "base); the environment records the TF32 settings"
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
    args: argparse.Namespace,
    run: RunShape | None,
    w: Workload,
    console: Console,
    save: Save = lambda part: None,
) -> Part:
    """The ladder's rows, the limit (unless --no-limit) and ``run`` projected at the top
    rung's speed; ``save`` gets the result so far after each rung and after the limit."""
    rungs, skipped = parse_rungs(args.rungs, w.device, args.compile)
    counts = timing_counts(args, w.device)
    part: Part = {
        "rows": [],
        "flops_per_step": {},
        "limit": None,
        "projection": None,
        "skipped": skipped,
        "timing": counts,
        "profile": None,
    }

    def checkpoint(part: Part) -> None:  # with the rows' ratios as far as they are known
        limit = part["limit"]
        finish_rows(part["rows"], limit["floor_ms"] if limit else None, part["flops_per_step"])
        save(part)

    profile_rung = rungs[-1].index if args.profile and rungs else None
    risky = [r for r in rungs if captures(r)]
    if risky:
        part["skipped"].append(ORDER_NOTE)
    safe = [r for r in rungs if not captures(r)]
    refused = run_ladder(w, safe, counts, console, part, checkpoint, profile_rung)
    console.print("counting the step's FLOPs ...", style="dim")
    for counted in sorted({counted_rung(r) for r in rungs}, key=lambda r: r.index):
        part["flops_per_step"][counted.index] = step_flops(w, counted)
    if not args.no_limit:
        console.print("limit: T_train, T_grad, T_fwd ...", style="dim")
        part["limit"] = measure_limit(w, compile=args.compile, **counts).as_dict()
        checkpoint(part)
    run_ladder(w, risky, counts, console, part, checkpoint, profile_rung, refused)
    checkpoint(part)
    timed_rows, limit = measured(part["rows"]), part["limit"]
    if run is not None and timed_rows:
        top = timed_rows[-1]
        clean_ms = limit["t_train_ms"] if limit else None
        part["projection"] = {
            **vars(run),
            **project(run, top["images_per_s"], clean_ms, w.batch_size).as_dict(),
        }
    return part
