"""Fused attack-step kernels against the eager chains they replace, and against the copy bandwidth.

    python benchmarks/kernels_gpu.py --out benchmarks/results    # on a GPU machine
    python benchmarks/kernels_gpu.py --smoke --out /tmp/kbench    # anywhere: tiny, end to end

Steps: (a) the device-to-device copy bandwidth (a 1 GiB copy, bytes read + written); (b) for
each op of benchmarks/cases.py, in float32 and bfloat16, NCHW and NHWC, at batch
128 x 3 x 224 x 224, (d) first a check of the fused result against its reference on fresh
random inputs, then the fused op and its eager chain timed with triton.testing.do_bench
(median and 20%/80% quantiles, after a warm-up, rotating between input sets so the 50 MB L2
holds none of them); (c) GB/s from the minimal bytes each op must move (each input read once,
each output written once), the fraction of the copy bandwidth and the speed-up over the eager
chain; (e) kernels-<gpu>-<date>.json and .md written to --out, with the device, driver and
versions, the date and the command. Targets are recorded, not asserted: every fused step at
>= 80% of the copy bandwidth and >= 3x faster than its eager chain.

An op whose kernel module is missing is skipped with a note; an op that fails is recorded with
its error and the others still run (one scripted call on a lent GPU must not be wasted). The
exit status is 1 if any check or op failed. --smoke runs tiny sizes (on the CPU: kernels under
the Triton interpreter, host-clock timing) to check the script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_COPY_FRACTION = 0.80
TARGET_SPEEDUP = 3.0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for kernels-<gpu>-<date>.json and .md (created if needed)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes and short timings, to check the script end to end (CPU too)",
    )
    p.add_argument("--batch", type=int, default=None, help="batch size (128; smoke 2)")
    p.add_argument("--size", type=int, default=None, help="image height = width (224; smoke 16)")
    p.add_argument("--channels", type=int, default=3, help="image channels")
    p.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated: " + ",".join(DTYPES)
    )
    p.add_argument("--layouts", default="nchw,nhwc", help="comma-separated: nchw,nhwc")
    p.add_argument("--ops", default=None, help="comma-separated op names (default: all)")
    p.add_argument(
        "--sets", type=int, default=None, help="input sets rotated between timed calls (3; smoke 2)"
    )
    p.add_argument("--warmup-ms", type=float, default=25, help="do_bench warm-up budget")
    p.add_argument("--rep-ms", type=float, default=200, help="do_bench timing budget")
    p.add_argument(
        "--copy-mib",
        type=int,
        default=None,
        help="size of the bandwidth copy in MiB (1024; smoke 8)",
    )
    return p.parse_args(argv)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _fmt_ms(t: dict[str, float]) -> str:
    return f"{t['median_ms']:.4g} ({t['p20_ms']:.4g}-{t['p80_ms']:.4g})"


def run_case(op, mod, shape, dtype, layout, device, args, bench_kw, copy_gbps) -> dict[str, Any]:
    from benchmarks.cases import make_inputs
    from benchmarks.runner import bench, bench_graph, gbps

    sets = [
        make_inputs(op.norm, shape, dtype, layout, device, seed=1000 + i) for i in range(args.sets)
    ]
    check = op.check(mod, sets[0])
    eager_check = op.check(mod, sets[0], impl="eager")

    def rotating(call):
        inputs = itertools.cycle(sets)
        return lambda: call(next(inputs))

    fused_t = bench(rotating(lambda t: op.fused(mod, t, "triton")), device, **bench_kw)
    eager_t = bench(rotating(op.eager), device, **bench_kw)
    # the same calls replayed from CUDA graphs (one input set: a graph replays what it captured;
    # 3+ tensors of 77 MB outgrow the 50 MB L2 anyway): the kernels without Python overhead
    fused_g = bench_graph(lambda: op.fused(mod, sets[0], "triton"), device)
    eager_g = bench_graph(lambda: op.eager(sets[0]), device)
    nbytes = op.nbytes(sets[0])
    # targets are judged on graph replays where there are any: the kernel, not the launcher
    judged_f, judged_e = (fused_g, eager_g) if fused_g else (fused_t, eager_t)
    fraction = gbps(nbytes, judged_f.median_ms) / copy_gbps
    speedup = judged_e.median_ms / judged_f.median_ms
    return {
        "bytes": nbytes,
        "check": check,
        "eager_check": eager_check,
        "fused": fused_t.as_dict(),
        "eager": eager_t.as_dict(),
        "fused_graph": fused_g.as_dict() if fused_g else None,
        "eager_graph": eager_g.as_dict() if eager_g else None,
        "call_speedup": eager_t.median_ms / fused_t.median_ms,
        "fused_gbps": gbps(nbytes, judged_f.median_ms),
        "eager_gbps": gbps(nbytes, judged_e.median_ms),
        "copy_fraction": fraction,
        "speedup": speedup,
        "meets_copy_target": fraction >= TARGET_COPY_FRACTION,
        "meets_speedup_target": speedup >= TARGET_SPEEDUP,
    }


def markdown(report: dict[str, Any]) -> str:
    env, cfg, copy = report["environment"], report["config"], report["copy"]
    lines = [
        f"# Fused kernels vs eager chains: {env['device']}",
        "",
        f"- device: {env['device']}; driver {env['driver']}; CUDA {env['cuda']}",
        f"- torch {env['torch']}, triton {env['triton']}, python {env['python']}",
        f"- date: {env['date']}; commit {env['git_commit']}"
        + (" (uncommitted changes)" if env["git_dirty"] else ""),
        f"- command: `{env['command']}`",
        f"- shape {tuple(cfg['shape'])}; {cfg['sets']} input sets rotated; timer: {cfg['timer']}"
        + ("; **smoke run: the numbers mean nothing**" if cfg["smoke"] else ""),
        f"- copy bandwidth: {copy['gbps']:.1f} GB/s ({copy['bytes'] / 2**20:.0f} MiB moved, "
        f"{_fmt_ms(copy['timing'])} ms)",
        f"- targets (recorded, not asserted): fused >= {TARGET_COPY_FRACTION:.0%} of the copy "
        f"bandwidth, >= {TARGET_SPEEDUP:g}x the eager chain",
        "",
        "Times in ms: median (20%-80%). *call*: the Python call as a user makes it in eager "
        "mode (do_bench, launch overhead included); *graph*: the same call replayed from a CUDA "
        "graph, the kernels alone, as in a captured attack. Speed-up, GB/s, fraction of copy "
        "and the targets are on graph replays. GB/s from the minimal bytes: each input read "
        "once, each output written once.",
        "",
        "| op | dtype | layout | fused call | eager call | call speed-up | fused graph | "
        "eager graph | speed-up | fused GB/s | of copy | check | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        head = f"| {r['op']} | {r['dtype']} | {r['layout']} |"
        if "error" in r:
            lines.append(f"{head} error | | | | | | | | | {r['error'].splitlines()[-1][:80]} | |")
            continue
        met = (
            ("bw " + ("yes" if r["meets_copy_target"] else "no"))
            + ", "
            + ("3x " + ("yes" if r["meets_speedup_target"] else "no"))
        )
        chk = "ok" if r["check"]["ok"] else "**FAIL**"
        if r["check"].get("max_abs_diff") is not None:
            chk += f" ({r['check']['max_abs_diff']:.2g})"
        graphs = (
            f"{_fmt_ms(r['fused_graph'])} | {_fmt_ms(r['eager_graph'])}"
            if r["fused_graph"]
            else "n/a | n/a"
        )
        lines.append(
            f"{head} {_fmt_ms(r['fused'])} | {_fmt_ms(r['eager'])} | {r['call_speedup']:.2f}x | "
            f"{graphs} | {r['speedup']:.2f}x | {r['fused_gbps']:.4g} | {r['copy_fraction']:.0%} | "
            f"{chk} | {met} |"
        )
    notes = (
        report["skipped"]
        + [
            f"{r['op']} {r['dtype']} {r['layout']}: check {r['check']['note']}"
            for r in report["results"]
            if "check" in r and r["check"]["note"]
        ]
        + [
            f"{r['op']} {r['dtype']} {r['layout']}: eager chain {r['eager_check']['note']}"
            for r in report["results"]
            if "eager_check" in r and r["eager_check"]["note"]
        ]
    )
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("no CUDA device: run with --smoke to check the script on the CPU", file=sys.stderr)
        return 2
    if not cuda:  # before triton is first imported (by the kernel modules)
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from benchmarks.cases import OPS
    from benchmarks.runner import copy_bandwidth, environment

    device = torch.device("cuda" if cuda else "cpu")
    args.batch = args.batch or (2 if args.smoke else 128)
    args.size = args.size or (16 if args.smoke else 224)
    args.sets = args.sets or (2 if args.smoke else 3)
    copy_mib = args.copy_mib or (8 if args.smoke else 1024)
    shape = (args.batch, args.channels, args.size, args.size)
    dtypes = [DTYPES[d] for d in args.dtypes.split(",")]
    layouts = [(name, LAYOUTS[name]) for name in args.layouts.split(",")]
    wanted = set(args.ops.split(",")) if args.ops else None
    ops = [op for op in OPS if wanted is None or op.name in wanted]
    if wanted and (unknown := wanted - {op.name for op in OPS}):
        print(f"unknown ops {sorted(unknown)}; known: {[op.name for op in OPS]}", file=sys.stderr)
        return 2
    bench_kw: dict[str, Any] = {"warmup_ms": args.warmup_ms, "rep_ms": args.rep_ms}
    if args.smoke:
        bench_kw.update(warmup_ms=5, rep_ms=20, cpu_reps=2)

    env = environment(device)
    print(f"{env['device']} | torch {env['torch']} | triton {env['triton']} | {env['date']}")
    copy_gbps, copy_t, copy_bytes = copy_bandwidth(device, copy_mib * 2**20, **bench_kw)
    print(f"copy bandwidth: {copy_gbps:.1f} GB/s")
    results, skipped, failed = [], [], False
    for op in ops:
        mod, why = op.load()
        if mod is None:
            skipped.append(f"{op.name}: {why}")
            print(f"{op.name}: {why}")
            continue
        for dtype, (lname, layout) in itertools.product(dtypes, layouts):
            row: dict[str, Any] = {
                "op": op.name,
                "dtype": str(dtype).removeprefix("torch."),
                "layout": lname,
                "shape": list(shape),
            }
            try:
                row |= run_case(op, mod, shape, dtype, layout, device, args, bench_kw, copy_gbps)
            except Exception:  # record and go on: the other ops still get measured
                row["error"] = traceback.format_exc()
                failed = True
                print(row["error"], file=sys.stderr)
            else:
                failed |= not row["check"]["ok"]
                graph = row["fused_graph"] or row["fused"]
                print(
                    f"{op.name:18s} {row['dtype']:8s} {lname} call: fused "
                    f"{row['fused']['median_ms']:.4g} ms, eager {row['eager']['median_ms']:.4g} "
                    f"ms ({row['call_speedup']:.2f}x); graph: fused {graph['median_ms']:.4g} ms "
                    f"({row['fused_gbps']:.4g} GB/s, {row['copy_fraction']:.0%} of copy), "
                    f"{row['speedup']:.2f}x eager; check "
                    f"{'ok' if row['check']['ok'] else 'FAIL ' + row['check']['note']}"
                )
            results.append(row)
            if cuda:
                torch.cuda.empty_cache()

    report = {
        "environment": env,
        "config": {
            "shape": list(shape),
            "sets": args.sets,
            "smoke": args.smoke,
            "timer": "triton.testing.do_bench (call), do_bench_cudagraph (graph)"
            if cuda
            else "host clock (perf_counter)",
            **bench_kw,
        },
        "copy": {"gbps": copy_gbps, "bytes": copy_bytes, "timing": copy_t.as_dict()},
        "targets": {"copy_fraction": TARGET_COPY_FRACTION, "speedup": TARGET_SPEEDUP},
        "results": results,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = slug(torch.cuda.get_device_name(device)) if cuda else "cpu"
    stem = f"kernels-{gpu}{'-smoke' if args.smoke else ''}-{_dt.date.today().isoformat()}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {args.out / stem}.json and .md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
