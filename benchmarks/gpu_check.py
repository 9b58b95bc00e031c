"""The one scripted call on a lent GPU machine (run through benchmarks/gpu_check.sh, which
installs first): its steps in order of value, each under its own time budget, the benches
taking what remains, the whole within BUDGET_S. Every step's output goes to $OUT/log.txt as it
runs, and $OUT/summary.json and summary.md are rewritten after each step, so a call cut short
still brings back what it did. A step that overruns its budget is stopped, noted, and the next
one runs; a step there is no time left for is skipped, and noted too.

    python -m benchmarks.gpu_check             # on the GPU machine ($OUT set)
    python -m benchmarks.gpu_check --dry-run   # on a CPU: the plan, then its checks

The dry run prints the plan with its budgets, then checks what the steps need: every module
they import resolves, the GPU tests collect, and every `fastrft train` and `fastrft bench`
command line parses (`--print-config`, the bench's torch-free parser); exit 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480  # 8 minutes: a device call, its start and a rerun fit a 15-minute lease
MIN_STEP_S = 30  # a step with less time than this left is skipped rather than started
WORK = Path("/tmp/fastrft-gpu-check")  # run directories and step results (not brought back)
PY = sys.executable
GPU_TESTS = (
    "tests/bench/test_gpu.py",
    "tests/engine/test_gpu_engine.py",
    "tests/attacks/test_gpu.py",
)
# three epochs of the toy task on ResNet-18 at 32 px, the hinge's eps = 0 phase being the
# first: the whole-step graph is captured, then captured anew when the attack switches on
HINGE_RUN = (
    "configs/toy.yaml",
    "model.name=resnet18",
    "data.img_size=32",
    "data.batch_size=256",
    "data.toy_samples=8192",
    "epochs=3",
    "schedule.name=hinge",
    "schedule.t1=0",
    "schedule.t2=2",
    "speed.amp=bf16",
    "speed.cuda_graphs=true",
    "speed.graph_step=true",
    f"out_dir={WORK}/hinge",
)
# the ladders the targets are stated for: batch 128, bf16, 224 px, APGD-7 (the presets'),
# baseline, every lever with the attack's graph, and the whole step in one graph
LADDERS = ("resnet50", "vit_b16")
LADDER_RUNGS = "0,6,7"


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    argv: tuple[str, ...]
    budget_s: int | None
    """None: an even share of what the earlier steps left, among the steps so marked."""
    imports: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    summarize: Callable[[str], dict[str, Any]] = lambda output: {}
    """The step's result for summary.json, from its output (and the files it wrote)."""


def _json_file(path: Path) -> Callable[[str], dict[str, Any]]:
    def read(_: str) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.is_file() else {}

    return read


def _pytest_counts(_: str) -> dict[str, Any]:
    path = WORK / "pytest.xml"
    if not path.is_file():
        return {}
    suite = ET.parse(path).getroot().find("testsuite")
    keys = ("tests", "failures", "errors", "skipped")
    return {} if suite is None else {k: int(suite.get(k, 0)) for k in keys}


def _hinge(output: str) -> dict[str, Any]:
    metrics = WORK / "hinge" / "metrics.jsonl"
    epochs = (
        [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    )
    keep = ("epoch", "eps", "images_per_s", "val_clean_acc")
    return {
        "epochs": [{k: e[k] for k in keep if k in e} for e in epochs if "images_per_s" in e],
        # TORCH_LOGS=recompiles: one line per recompilation, with its reason
        "recompiles": output.count("Recompiling function"),
    }


def _bench(out: Path, name: str) -> Callable[[str], dict[str, Any]]:
    def read(_: str) -> dict[str, Any]:
        path = out / f"bench-{name}.json"
        if not path.is_file():
            return {}
        r = json.loads(path.read_text())
        rows = [{k: row.get(k) for k in ("rung", "name", "images_per_s")} for row in r["rows"]]
        return {"rows": rows, "targets": [t["verdict"] for t in r.get("targets", [])]}

    return read


def _curves(path: Path) -> Callable[[str], dict[str, Any]]:
    """Per run: each measure's seconds and passes, and the comparison (not the curves)."""

    def read(_: str) -> dict[str, Any]:
        if not path.is_file():
            return {}
        keep = ("wall_s", "cpu_s", "gradient_passes")
        return {
            m["model"]: {
                **{name: {k: m[name][k] for k in keep} for name in ("all", "bisect", "reseeded")},
                "comparison": m["comparison"],
            }
            for m in json.loads(path.read_text())
        }

    return read


def bench_args(name: str, out: Path) -> tuple[str, ...]:
    """The `fastrft bench` arguments of one ladder."""
    return (
        "--preset",
        name,
        "--rungs",
        LADDER_RUNGS,
        "--json",
        str(out / f"bench-{name}.json"),
        "--markdown",
        str(out / f"bench-{name}.md"),
    )


def plan(out: Path) -> list[Step]:
    """The steps in order of value."""
    facts, probe = WORK / "facts.json", WORK / "probe.json"
    steps = [
        Step(
            "facts",
            "versions, GPU, TF32 modes, the capture switch, Dynamo's recompile limit",
            (PY, "-m", "benchmarks.gpu_facts", "--json", str(facts)),
            30,
            ("benchmarks.gpu_facts",),
            summarize=_json_file(facts),
        ),
        Step(
            "gpu-tests",
            "pytest -m gpu: the bench's, the engine's and the attacks' GPU tests",
            # faulthandler_timeout: a hanging test's traceback lands in the log
            (
                PY,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "faulthandler_timeout=60",
                f"--junitxml={WORK}/pytest.xml",
                *GPU_TESTS,
            ),
            120,
            ("pytest",),
            summarize=_pytest_counts,
        ),
        Step(
            "capture-probe",
            "whole-step graph replays against eager steps (compiled bf16 ResNet-18, 32 px)",
            (PY, "-m", "benchmarks.capture_probe", "--json", str(probe)),
            75,
            ("benchmarks.capture_probe", "timm"),
            summarize=_json_file(probe),
        ),
        Step(
            "hinge-graph-step",
            "3 hinge epochs with speed.graph_step=true: recapture at the switch, images/s",
            (PY, "-m", "fastrft", "train", *HINGE_RUN, "--no-progress"),
            75,
            ("fastrft.cli", "fastrft.engine.trainer"),
            env={"TORCH_LOGS": "recompiles"},
            summarize=_hinge,
        ),
        Step(
            "curve-strategies",
            "the hinge run's curve 0..16/255 (APGD-CE-10, fp32) by all, bisect, and all under "
            "seed + 1: passes, seconds, gaps",
            (
                PY,
                "-m",
                "benchmarks.curve_strategies",
                str(WORK / "hinge"),
                "--device",
                "cuda",
                "--json",
                str(out / "curve-strategies.json"),
            ),
            40,
            ("benchmarks.curve_strategies",),
            summarize=_curves(out / "curve-strategies.json"),
        ),
    ]
    for name in LADDERS:
        steps.append(
            Step(
                f"bench-{name}",
                f"fastrft bench ladder, {name} (224 px, batch 128, APGD-7), rungs {LADDER_RUNGS}",
                (PY, "-m", "fastrft", "bench", *bench_args(name, out)),
                None,
                ("fastrft.bench.cli",),
                summarize=_bench(out, name),
            )
        )
    return steps


def budget_of(step: Step, steps: list[Step], left: float) -> float:
    """The step's budget: its own, or its share of what is left."""
    if step.budget_s is not None:
        return min(step.budget_s, left)
    rest = steps[steps.index(step) :]
    return left / sum(s.budget_s is None for s in rest)


def run_step(step: Step, budget: float, log: Path) -> tuple[str, float, str]:
    """(status, seconds, output) of the step run under ``budget`` seconds, its output
    appended to ``log``. A step over budget is ended with its whole process group."""
    start = time.monotonic()
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "a") as f:
        f.write(f"\n=== {step.name}: {' '.join(step.argv)}\n")
        f.flush()
        proc = subprocess.Popen(
            step.argv,
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **step.env},
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=budget)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"stopped at its budget ({budget:.0f} s)"
    with open(log, errors="replace") as f:
        f.seek(offset)
        output = f.read()
    return status, time.monotonic() - start, output


def _result(step: Step, output: str) -> dict[str, Any]:
    """The step's result; a file it left half-written is noted rather than ending the call."""
    try:
        return step.summarize(output)
    except (OSError, ValueError, KeyError, ET.ParseError) as e:
        return {"unreadable": f"{type(e).__name__}: {e}"}


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# GPU check",
        "",
        f"{summary['device']}, {summary['date']}, commit {summary['git_commit']}; "
        f"{summary['seconds']:.0f} of {BUDGET_S} s",
        "",
        "| step | status | seconds | budget | result |",
        "|---|---|---|---|---|",
    ]
    for s in summary["steps"]:
        result = json.dumps(s.get("result", {}), separators=(",", ":"))
        if len(result) > 300:
            result = result[:297] + "..."
        lines.append(
            f"| {s['name']} | {s['status']} | {s.get('seconds', 0):.0f} | "
            f"{s['budget_s']:.0f} | `{result}` |"
        )
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    log, start = out / "log.txt", time.monotonic()
    steps = plan(out)
    summary: dict[str, Any] = {
        "device": "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": os.environ.get("GIT_COMMIT"),
        "seconds": 0.0,
        "steps": [],
    }
    failed = False
    for step in steps:
        left = BUDGET_S - (time.monotonic() - start)
        budget = budget_of(step, steps, left)
        record: dict[str, Any] = {"name": step.name, "what": step.what, "budget_s": budget}
        if budget < MIN_STEP_S:
            record["status"] = "skipped: no time left"
        else:
            print(f"gpu_check: {step.name} (up to {budget:.0f} s)", flush=True)
            status, seconds, output = run_step(step, budget, log)
            record.update(status=status, seconds=seconds, result=_result(step, output))
            failed |= status != "ok"
            print(f"gpu_check: {step.name}: {status} in {seconds:.0f} s", flush=True)
        if step.name == "facts":
            facts = record.get("result", {})
            summary["device"] = facts.get("device", "unknown")
            summary["git_commit"] = facts.get("git_commit") or summary["git_commit"]
        summary["steps"].append(record)
        summary["seconds"] = time.monotonic() - start
        write_summary(out, summary)
    print(summary_markdown(summary))
    return 1 if failed else 0


def print_plan(steps: list[Step]) -> None:
    print(f"gpu_check plan: {len(steps)} steps within {BUDGET_S} s, in order of value")
    fixed = sum(s.budget_s or 0 for s in steps)
    shared = sum(s.budget_s is None for s in steps)
    for s in steps:
        budget = f"{s.budget_s} s" if s.budget_s else f"1/{shared} of the rest"
        print(f"  {s.name:<18} {budget:>16}  {s.what}")
        print(f"  {'':<18} {'':>16}  $ {' '.join(s.argv[1:])}")
    print(f"  the benches share what the others leave: at least {BUDGET_S - fixed} s")


def _checks(lines: dict[str, list[str]]) -> bool:
    """Run the command lines side by side (each imports torch: seconds apiece); True if all
    succeed, each named with its verdict and a failure's output."""
    procs = {
        what: subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for what, argv in lines.items()
    }
    ok = True
    for what, proc in procs.items():
        output = proc.communicate()[0].decode(errors="replace")
        print(f"  {'ok' if proc.returncode == 0 else 'FAILED'}: {what}")
        if proc.returncode != 0:
            print(output[-3000:])
            ok = False
    return ok


def _bench_parses(argv: tuple[str, ...]) -> bool:
    """Whether `fastrft bench` accepts the arguments: its parser, then its preset and
    key=value overrides through the bench's config loader (neither needs torch)."""
    from fastrft.bench.config import load_bench_config
    from fastrft.bench.options import parser
    from fastrft.config import ConfigError

    try:
        args = parser().parse_intermixed_args(list(argv))
        load_bench_config(args.preset, args.overrides)
    except (SystemExit, ConfigError) as err:
        print(f"  FAILED: fastrft bench {' '.join(argv)} ({err})")
        return False
    print(f"  ok: fastrft bench {' '.join(argv)} parses")
    return True


def dry_run(out: Path) -> int:
    steps = plan(out)
    print_plan(steps)
    print("checks:")
    modules = sorted({m for s in steps for m in s.imports})
    script = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]"
    collect = [PY, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    lines = {
        f"imports resolve: {', '.join(modules)}": [PY, "-c", script, *modules],
        "the GPU tests collect": [*collect, *GPU_TESTS],
    }
    ok = True
    for s in steps:
        if s.argv[1:4] == ("-m", "fastrft", "train"):
            lines[f"{s.name}: fastrft train ... --print-config"] = [*s.argv[:-1], "--print-config"]
        elif s.argv[1:4] == ("-m", "fastrft", "bench"):
            ok &= _bench_parses(s.argv[4:])
    ok &= _checks(lines)
    print("dry run: " + ("every check passed" if ok else "a check FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the plan and check it (CPU)")
    p.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="default: $OUT")
    args = p.parse_args(argv)
    if args.dry_run:
        return dry_run(args.out or Path("benchmarks/results/tmp"))
    if args.out is None:
        p.error("--out or $OUT: where the results go")
    return run(args.out)


if __name__ == "__main__":
    sys.exit(main())
