"""`fastrft sweep SWEEP.yaml`: every run of a grid, each in its own process and run directory,
resumably; with --tune, the ASHA search of the sweep's tune: section instead.

Everything is checked before anything starts: the sweep file, every run's config, the root
(another sweep's directory is refused) and the Ray address. A rerun skips finished runs,
resumes interrupted ones from their checkpoints and tries failed ones again, except a run that
failed on bad input (exit 2: a config or data error, deterministic) under an unchanged config,
which only --retry-failed runs again; exit code 0 when every run is done, 1 when some failed,
130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from rich.console import Console
from rich.table import Table

from fastrft.results import read_results

from .launch import Job, sigterm_interrupts, train_command
from .ledger import FILE as LEDGER
from .ledger import Ledger
from .local import local_slots, run_local
from .plan import Plan, check_root, failed_on_bad_input, locked, mark_root, mark_run, plan
from .rundir import LOG
from .spec import Run, SweepSpec, check_runs, load_spec
from .tracker import Outcome, Tracker


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft sweep",
        description="Run every cell of a sweep's grid with `fastrft train`, each in its own "
        "process and run directory under the sweep's root, recording each run's state in "
        "ROOT/ledger.jsonl. Rerun the same command to finish a sweep: finished runs are "
        "skipped, interrupted ones resume from their checkpoints, failed ones are tried again (not "
        "those that failed on bad input, exit 2, under an unchanged config: see --retry-failed).",
    )
    p.add_argument("spec", metavar="SWEEP.yaml", help="the sweep: base config, grid, seeds")
    p.add_argument(
        "--root",
        metavar="DIR",
        help="where run directories go (default: the sweep's root:, or runs/sweeps/NAME)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="runs at a time on this machine (default: one per visible GPU, or 1 on the CPU); "
        "with a new local Ray instance, its CPUs",
    )
    p.add_argument(
        "--gpus-per-run",
        type=int,
        metavar="N",
        help="GPUs of each run, trained with DDP under torchrun when more than 1 (default: 1 "
        "where there are GPUs, else 0)",
    )
    p.add_argument(
        "--retries",
        type=int,
        metavar="N",
        default=1,
        help="how many more times a failed run is tried in this invocation (default 1)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the runs that failed on bad input (exit 2: a config or data error) "
        "although their config has not changed, after fixing what they read (default: skipped)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        metavar="MIN",
        help="stop a run still going after MIN minutes (a hung run holds its GPU) and count it "
        "as failed, to be tried again like one (default: no limit)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine (default); ray: Ray tasks over a cluster",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster: HOST:PORT, ray://HOST:PORT or auto; default: a new local instance",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="run the ASHA search of the sweep's tune: section on Ray and write each search's "
        "best.yaml under ROOT/tune/, instead of the grid",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check everything, list the runs, start nothing"
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    _check_args(args)
    spec = load_spec(args.spec, args.root)
    if args.tune:
        return _tune(spec, args)
    runs = spec.runs()
    check_runs(spec, runs)
    check_root(spec, runs)
    if args.dry_run:
        _list(spec, runs, args.retry_failed)
        return 0
    with _ray(args) if args.backend == "ray" else nullcontext(), locked(spec.root):
        mark_root(spec)
        ledger = Ledger(spec.root / LEDGER)
        work = plan(spec, runs, ledger, args.retry_failed)
        return _sweep(spec, runs, work, ledger, args)


def _console() -> Console:
    """Progress lines on stderr, never wrapped (run ids and paths stay whole for grep)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _check_args(args: argparse.Namespace) -> None:
    for name, low in (("jobs", 1), ("gpus_per_run", 0), ("retries", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    if args.run_timeout is not None and args.run_timeout <= 0:
        raise ValueError(f"--run-timeout must be > 0 minutes, got {args.run_timeout:g}")
    if args.address is not None and args.backend != "ray" and not args.tune:
        raise ValueError("--address is for the Ray backend: add --backend ray")


def _ray(args: argparse.Namespace) -> AbstractContextManager[None]:
    from .ray_backend import ray_session

    return ray_session(args.address, args.jobs)


def _sweep(
    spec: SweepSpec, runs: list[Run], work: Plan, ledger: Ledger, args: argparse.Namespace
) -> int:
    console = _console()
    tracker = Tracker(ledger, spec.root, args.retries, console)
    if args.backend == "ray":
        from .ray_backend import cluster_gpus, run_ray

        gpus = min(1, cluster_gpus()) if args.gpus_per_run is None else args.gpus_per_run
        nproc, where = max(1, gpus), f"Ray tasks with {gpus} GPU(s) each"
    else:
        slots = local_slots(args.jobs, args.gpus_per_run)
        nproc, where = slots[0].nproc, f"{len(slots)} at a time"
    jobs = [
        Job(run, mark_run(spec, run), train_command(run, spec.root / run.id, nproc))
        for run in work.todo
    ]
    refused = f"{len(work.refused)} failed on bad input, " if work.refused else ""
    console.print(
        f"sweep {spec.name}: {len(runs)} runs, {len(work.finished)} done, {refused}"
        f"{len(jobs)} to run ({where}) in {spec.root}"
    )
    tracker.queue([j.run for j in jobs])
    try:
        with sigterm_interrupts():
            timeout_s = None if args.run_timeout is None else args.run_timeout * 60
            if args.backend == "ray":
                run_ray(jobs, tracker, gpus, timeout_s)
            else:
                run_local(jobs, tracker, slots, timeout_s)
    finally:
        Console().print(_summary(spec, runs, work, tracker.outcomes))
    failed = [r for r, o in tracker.outcomes.items() if o.state != "done" and not o.bad_input]
    if failed:
        console.print(
            f"{len(failed)} run(s) failed; their logs: {spec.root}/RUN/{LOG}. Rerun the same "
            "command to try them again."
        )
    bad_input = [*work.refused, *(r for r, o in tracker.outcomes.items() if o.bad_input)]
    if bad_input:
        console.print(
            f"{len(bad_input)} run(s) failed on bad input (exit 2: a config or data error, the "
            f"same on every try; logs: {spec.root}/RUN/{LOG}) and are not run again until "
            "their config changes: fix what the log names, then rerun with --retry-failed"
        )
    return 1 if failed or bad_input else 0


def _summary(
    spec: SweepSpec,
    runs: list[Run],
    work: Plan,
    outcomes: dict[str, Outcome],
) -> Table:
    table = Table(title=f"sweep {spec.name}: {spec.root}", title_justify="left")
    for column in ("run", "state", "tries", "clean", "adv", "E.adv", "note"):
        numeric = column in ("clean", "adv", "E.adv")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for run in runs:
        o = outcomes.get(run.id) or _earlier(run.id, work)
        note = o.error if o.state == "failed" else ("earlier" if run.id in work.finished else "")
        numbers = [
            f"{o.results[k]:.2%}" if o.results else "—"
            for k in ("clean_acc", "adv_acc", "expected_robustness")
        ]
        table.add_row(run.id, o.state, str(o.tries), *numbers, note)
    return table


def _earlier(run_id: str, work: Plan) -> Outcome:
    """The outcome of a run this invocation did not start: done, or failed on bad input."""
    if run_id in work.refused:
        return Outcome("failed", error=f"{work.refused[run_id]} (earlier; not run again)")
    return Outcome("done", results=work.finished.get(run_id))


def _list(spec: SweepSpec, runs: list[Run], retry_failed: bool) -> None:
    """The plan a sweep would follow, read without writing: its ledger (a run that failed on
    bad input under its present config is skipped, as the sweep skips it) and the results."""
    ledger = spec.root / LEDGER
    last = Ledger(ledger).last() if ledger.exists() else {}
    skipped = 0
    for run in runs:
        if read_results(spec.root / run.id) is not None:
            state = "done"
        elif not retry_failed and failed_on_bad_input(last.get(run.id, {}), run):
            state, skipped = "skipped", skipped + 1
        else:
            state = "to run"
        print(f"{state:<7} {run.id}\n        {shlex.join(train_command(run, spec.root / run.id))}")
    print(f"{len(runs)} runs in {spec.root}")
    if skipped:
        print(f"{skipped} skipped: failed on bad input under the same config (--retry-failed)")


def _tune(spec: SweepSpec, args: argparse.Namespace) -> int:
    from .ray_backend import cluster_gpus
    from .tune import check_searches, tune_all

    if spec.tune is None:
        raise ValueError(f"{spec.path} has no tune: section to search")
    epochs = check_searches(spec)
    check_root(spec, [])
    if args.dry_run:
        for search in spec.searches():
            print(f"search {search.id}: {' '.join(search.overrides)} -> {search.best}")
        return 0
    with _ray(args), locked(spec.root):
        mark_root(spec)
        tune_all(spec, epochs, min(1, cluster_gpus()), _console())
    return 0
