"""The local backend end to end on tiny runs: a sweep of four stopped with Ctrl-C, then killed
with SIGKILL mid-way and rerun (each run done exactly once, the cut ones resumed), the report
on it checked against the ledger, and a run that fails while the others finish."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from fastrft.cli import main

from .helpers import ledger, states, write_sweep

GRID = {"optim.lr": [0.01, 0.003], "schedule.name": ["fix", "hinge"]}
IDS = [f"optim.lr={lr},schedule.name={s}" for lr in ("0.01", "0.003") for s in ("fix", "hinge")]
EPOCHS = 3


def _midway(root: Path) -> bool:
    """One run done, and another checkpointed with epochs still to train: a run whose last
    epoch is checkpointed may write its results before the kill lands."""
    if not (root / "ledger.jsonl").exists() or "done" not in {r["state"] for r in ledger(root)}:
        return False
    return any(_cut(root / run) and _epochs_logged(root / run) < EPOCHS for run in IDS)


def _epochs_logged(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return metrics.read_text().count("\n") if metrics.exists() else 0


def _cut(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.pt").exists() and not (
        run_dir / "results.json"
    ).exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent has not reaped it


def _epochs(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").open()]


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 240
    while not condition() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before {what}"


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A sweep of four runs stopped with Ctrl-C once a run has a checkpoint, started again and
    SIGKILLed mid-way (a run done, another cut), then rerun to the end."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder, GRID, overrides={"epochs": EPOCHS})
    root = folder / "runs"
    cmd = [sys.executable, "-m", "fastrft", "sweep", str(path), "--jobs", "2"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

    proc = subprocess.Popen(cmd, **quiet)
    _wait_for(lambda: any(_cut(root / run) for run in IDS), proc, "a checkpoint")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    stopped = (ledger(root), [run for run in IDS if _cut(root / run)])

    proc = subprocess.Popen(cmd, **quiet)
    _wait_for(lambda: _midway(root), proc, "it could be killed mid-way")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cut = [run for run in IDS if _cut(root / run)]
    children = [r["pid"] for r in ledger(root)[len(stopped[0]) :] if r["state"] == "running"]
    time.sleep(1.0)
    assert not [pid for pid in children if _alive(pid)], "runs outlived the killed sweep"
    killed = ledger(root)
    main(["sweep", str(path), "--jobs", "2"])  # exit code 0: no SystemExit
    return path, root, stopped, killed, cut


def test_ctrl_c_stops_every_run_cleanly_keeping_its_checkpoint(finished_sweep):
    _, root, (records, checkpointed), _, _ = finished_sweep
    last = {r["run"]: r for r in records}
    interrupted = [run for run, r in last.items() if r["state"] == "interrupted"]
    assert len(interrupted) == 2 and not [r for r in last.values() if r["state"] == "running"]
    assert checkpointed and set(checkpointed) <= set(interrupted)
    for run in checkpointed:  # stopped by the trainer's own Ctrl-C path, resumed next time
        assert last[run]["exit_code"] == 130
        assert "resuming" in (root / run / "sweep.log").read_text()


def test_rerun_after_sigkill_does_every_run_exactly_once(finished_sweep):
    _, root, _, killed, cut = finished_sweep
    assert cut, "no run was cut mid-way"
    assert sum(r["state"] == "done" for r in killed) >= 1
    for run in IDS:
        assert states(root, run).count("done") == 1, states(root, run)
        assert _epochs(root / run) == list(range(EPOCHS)), run
        assert (root / run / "results.json").exists()
    for run in cut:  # resumed from its checkpoint, not started again
        assert states(root, run)[-4:] == ["interrupted", "queued", "running", "done"]
        log = (root / run / "sweep.log").read_text()
        assert log.count("resuming") == log.count("=== ") - 1


def test_a_third_run_of_the_sweep_starts_nothing(finished_sweep, capsys):
    path, root, *_ = finished_sweep
    count = len(ledger(root))
    main(["sweep", str(path)])
    assert len(ledger(root)) == count
    assert "4 runs, 4 done, 0 to run" in capsys.readouterr().err


def test_report_numbers_match_the_ledger(finished_sweep, tmp_path):
    _, root, *_ = finished_sweep
    done = {r["run"]: r["results"] for r in ledger(root) if r["state"] == "done"}
    main(["report", str(root), "--out", str(tmp_path)])
    with open(tmp_path / "results.csv") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(IDS)
    for run, results in done.items():
        for key in ("clean_acc", "adv_acc", "expected_robustness"):
            assert float(rows[run][key]) == results[key], (run, key)
        assert rows[run]["method"] == run.split("schedule.name=")[1]
    text = (tmp_path / "report.md").read_text()
    for lr in ("0.01", "0.003"):  # the paper's cell: Clean / Adv / E.adv in %, fix then hinge
        runs = [done[f"optim.lr={lr},schedule.name={m}"] for m in ("fix", "hinge")]
        cells = [
            " / ".join(f"{100 * r[k]:.2f}" for k in ("clean_acc", "adv_acc", "expected_robustness"))
            + "\u2020"  # the report marks bisected curves (eval.strategy's default)
            for r in runs
        ]
        assert f"| tiny_cnn | toy | {lr} | {cells[0]} | {cells[1]} |" in text
    hinge = [
        done[f"optim.lr={lr},schedule.name=hinge"]["expected_robustness"]
        for lr in ("0.01", "0.003")
    ]
    fix = [
        done[f"optim.lr={lr},schedule.name=fix"]["expected_robustness"] for lr in ("0.01", "0.003")
    ]
    wins = sum(h > f for h, f in zip(hinge, fix, strict=True))
    t = ttest_rel(hinge, fix).statistic
    assert f"| 8/255 | hinge vs fix | E.adv | {wins} of 2 |" in text
    assert f"| {t:.2f} |" in text
    for name in ("curves", "training"):
        assert (tmp_path / name / "tiny_cnn-toy-eps_8_255-optim.lr=0.01.png").stat().st_size > 0


def test_a_run_failing_on_bad_input_is_not_tried_again(tmp_path, capsys):
    """A cell whose trainer exits 2 (its data file is no .npz: bad input fails the same way
    every time): tried once despite --retries, failed with the reason, while the other cell
    finishes; the sweep says so, exits 1, and a rerun starts nothing."""
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz file")
    variants = {
        "toy": {"data.source": "toy"},
        "broken": {"data.source": "npz", "data.root": str(broken)},
    }
    path = write_sweep(tmp_path, {"data": variants})
    root = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(path), "--jobs", "2", "--retries", "1"])
    assert exit_info.value.code == 1
    assert states(root, "data=toy") == ["queued", "running", "done"]
    assert states(root, "data=broken") == ["queued", "running", "failed"]
    failed = next(r for r in ledger(root) if r["state"] == "failed")
    assert failed["exit_code"] == 2 and failed["attempt"] == 1
    log_tail = (root / "data=broken" / "sweep.log").read_text().strip().splitlines()[-1]
    assert failed["error"] == log_tail.strip() and "npz" in log_tail
    err = capsys.readouterr().err
    assert "not tried again" in err and "--retry-failed" in err

    count = len(ledger(root))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(path)])
    assert exit_info.value.code == 1 and len(ledger(root)) == count
    err = capsys.readouterr().err
    assert "2 runs, 1 done, 1 failed on bad input, 0 to run" in err
    assert "--retry-failed" in err

    # the dry run lists the plan a rerun would follow (it used to call the cell "to run")
    capsys.readouterr()
    assert main(["sweep", str(path), "--dry-run"]) is None
    listed = capsys.readouterr().out
    assert "done    data=toy" in listed and "skipped data=broken" in listed, listed
    assert "1 skipped: failed on bad input" in listed, listed
    assert len(ledger(root)) == count  # a dry run writes nothing
    main(["sweep", str(path), "--dry-run", "--retry-failed"])
    assert "to run  data=broken" in capsys.readouterr().out
