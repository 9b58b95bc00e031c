"""benchmarks/gpu_check.sh --dry-run: the GPU call's plan, checked on the CPU. A step whose
imports break, or a `fastrft train`/`fastrft bench` line the CLI no longer accepts, fails here
rather than on the lent machine."""

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_check import plan

REPO = Path(__file__).resolve().parents[2]


def _dry_run() -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_dry_run_prints_every_step_and_passes_its_checks():
    run = _dry_run()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "within 480 s" in run.stdout
    for step in plan(Path("out")):
        assert f"  {step.name} " in run.stdout
    assert "FAILED" not in run.stdout
    assert "dry run: every check passed" in run.stdout


def test_a_bench_line_the_cli_refuses_fails_the_dry_run(capsys):
    from benchmarks.gpu_check import _bench_parses

    assert _bench_parses(("--preset", "resnet50", "--rungs", "0,6,7"))
    assert not _bench_parses(("--preset", "resnet50", "--no-such-flag"))
    assert "FAILED: fastrft bench --preset resnet50 --no-such-flag" in capsys.readouterr().out


def test_the_benches_share_what_the_fixed_steps_leave():
    from benchmarks.gpu_check import BUDGET_S, budget_of

    steps = plan(Path("out"))
    fixed = sum(s.budget_s or 0 for s in steps)
    first, second = (s for s in steps if s.budget_s is None)
    left = BUDGET_S - fixed
    assert budget_of(first, steps, left) == left / 2
    assert budget_of(second, steps, left / 2) == left / 2
    assert budget_of(steps[0], steps, 10) == 10  # never more than is left


def test_a_step_over_budget_is_stopped_and_the_summary_still_written(tmp_path, monkeypatch):
    import json

    from benchmarks import gpu_check
    from benchmarks.gpu_check import Step

    py = sys.executable
    steps = [
        Step("quick", "prints", (py, "-c", "print('hello')"), 30, ()),
        Step("hangs", "sleeps past its budget", (py, "-c", "import time; time.sleep(60)"), 3, ()),
        Step("late", "no time left", (py, "-c", "pass"), None, ()),
    ]
    monkeypatch.setattr(gpu_check, "plan", lambda out: steps)
    monkeypatch.setattr(gpu_check, "WORK", tmp_path / "work")
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 2.5)
    monkeypatch.setattr(gpu_check, "BUDGET_S", 5)
    assert gpu_check.run(tmp_path / "out") == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status["quick"] == "ok"
    assert status["hangs"] == "stopped at its budget (3 s)"
    assert status["late"] == "skipped: no time left"
    assert "=== quick:" in (tmp_path / "out" / "log.txt").read_text()
    assert (
        "| hangs | stopped at its budget (3 s) |" in (tmp_path / "out" / "summary.md").read_text()
    )
