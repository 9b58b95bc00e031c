"""How runs are placed and launched: slots per GPU (or group of GPUs, trained with DDP under
torchrun) or per CPU job, and each run's command line."""

import contextlib
import io
import os
import signal
import sys
import time
import types
from pathlib import Path

import pytest
from rich.console import Console

from fastrft.sweep import local
from fastrft.sweep.launch import TIMED_OUT, Job, spawn, stop, train_command, wait
from fastrft.sweep.ledger import Ledger
from fastrft.sweep.local import Slot, local_slots
from fastrft.sweep.spec import Run
from fastrft.sweep.tracker import Tracker, _killed_by
from tests.helpers import free_port


def test_one_slot_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    slots = local_slots(jobs=None, gpus_per_run=None)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert {s.nproc for s in slots} == {1}
    assert len(local_slots(jobs=2, gpus_per_run=None)) == 2


def test_multi_gpu_runs_get_disjoint_groups(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7,8")
    slots = local_slots(jobs=None, gpus_per_run=2)
    assert [(s.env["CUDA_VISIBLE_DEVICES"], s.nproc) for s in slots] == [("4,5", 2), ("6,7", 2)]
    with pytest.raises(ValueError, match="--gpus-per-run 6, but only 5 GPU"):
        local_slots(jobs=None, gpus_per_run=6)


def test_cpu_jobs_share_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    slots = local_slots(jobs=4, gpus_per_run=None)
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}] * 4
    assert len(local_slots(jobs=None, gpus_per_run=None)) == 1
    with pytest.raises(ValueError, match="no GPU is visible"):
        local_slots(jobs=None, gpus_per_run=1)


def test_commands_train_one_process_or_torchrun():
    run = Run("seed=0", (("seed", "0"),), (Path("/c/base.yaml"),), ("seed=0",))
    single = train_command(run, Path("/r/seed=0"))
    assert single == (
        sys.executable,
        "-m",
        "fastrft",
        "train",
        "--no-progress",
        "/c/base.yaml",
        "seed=0",
        "out_dir=/r/seed=0",
    )
    ddp = train_command(run, Path("/r/seed=0"), nproc=4)
    assert ddp[:6] == (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
    )
    assert ddp[6:] == single[1:]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has finished: only its exit status is left


def _workers(tmp_path, *args: str):
    """torchrun with two sleeping workers, started as the sweep starts a run; their pids."""
    worker = Path(__file__).with_name("ddp_sleeper.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-port", str(free_port()), str(worker), str(tmp_path), *args]
    proc = spawn(command, tmp_path, {"CUDA_VISIBLE_DEVICES": ""})
    while len(list(tmp_path.glob("rank*.pid"))) < 2:  # until both are up, or torchrun ends
        assert proc.poll() is None, (tmp_path / "sweep.log").read_text()
        time.sleep(0.2)
    return proc, [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]


def _gone(pids, seconds=20.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal")
def test_torchrun_workers_die_with_a_killed_torchrun(tmp_path):
    proc, workers = _workers(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # as the kernel's OOM killer, or a parent's death
    proc.wait()
    assert _gone(workers), "torchrun's workers outlived it"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_a_run_that_will_not_stop_kills_its_whole_tree(tmp_path):
    # workers that do not die with torchrun, one of which cannot take its SIGINT
    proc, workers = _workers(tmp_path, "--plain")
    os.kill(workers[0], signal.SIGSTOP)
    try:
        stop([proc], grace=2.0)
        assert _gone(workers), "a worker outlived the stop"
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_gpu_runs_share_the_cores_and_compile_workers(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    for gpus_per_run in (None, 2):  # four processes either way: four cores each
        for slot in local_slots(jobs=None, gpus_per_run=gpus_per_run):
            assert slot.env["OMP_NUM_THREADS"] == slot.env["TORCHINDUCTOR_COMPILE_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    assert {s.env["OMP_NUM_THREADS"] for s in local_slots(jobs=None, gpus_per_run=None)} == {"3"}


class _Exited:
    """A process that has already ended with ``code``."""

    pid = 4242

    def __init__(self, code):
        self.returncode = code

    def poll(self):
        return self.returncode


def test_a_failed_run_is_retried_on_another_slot(monkeypatch, tmp_path):
    codes = iter([1, 0, 0])  # the first run fails once, then every start succeeds
    monkeypatch.setattr(local, "spawn", lambda command, run_dir, env: _Exited(next(codes)))
    monkeypatch.setattr(local, "POLL_S", 0.0)
    starts = []

    class Recorder:  # stands in for the Tracker
        def started(self, run, **info):
            starts.append((run, info["slot"], info["gpus"]))

        def finished(self, run, code, seconds):
            return code != 0  # retry a failure

    jobs = [Job(run, tmp_path / run, ("train",)) for run in ("a", "b")]
    slots = [Slot({"CUDA_VISIBLE_DEVICES": "0"}), Slot({"CUDA_VISIBLE_DEVICES": "1"})]
    local.run_local(jobs, Recorder(), slots)
    assert starts == [("a", 0, "0"), ("b", 1, "1"), ("a", 1, "1")]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (-9, "killed by SIGKILL (the kernel's out-of-memory killer?)"),
        (-15, "killed by SIGTERM"),
        (1, None),
        (0, None),
    ],
)
def test_a_run_killed_by_a_signal_says_so(code, error):
    assert _killed_by(code) == error


def test_a_run_past_its_timeout_is_stopped_and_fails(tmp_path):
    finished = []

    class Recorder:  # stands in for the Tracker
        def started(self, run, **info):
            pass

        def finished(self, run, code, seconds):
            finished.append((run, code, seconds))
            return False

    hang = (sys.executable, "-c", "import time; time.sleep(120)")
    quick = (sys.executable, "-c", "pass")
    (tmp_path / "hung").mkdir()
    (tmp_path / "quick").mkdir()
    jobs = [Job("hung", tmp_path / "hung", hang), Job("quick", tmp_path / "quick", quick)]
    slots = [Slot({}), Slot({})]
    start = time.monotonic()
    local.run_local(jobs, Recorder(), slots, timeout_s=1.0)
    assert time.monotonic() - start < 30  # stopped by SIGINT, well inside the grace
    assert sorted((run, code) for run, code, _ in finished) == [("hung", TIMED_OUT), ("quick", 0)]
    assert wait(spawn(hang, tmp_path / "hung", {}), timeout_s=0.5) == TIMED_OUT


@pytest.mark.parametrize(
    ("code", "error"),
    [(TIMED_OUT, "stopped at --run-timeout"), (-9, "killed by SIGKILL (the kernel's out-of")],
)
def test_the_ledger_says_why_a_run_failed(tmp_path, code, error):
    run = types.SimpleNamespace(id="r1")
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "sweep.log").write_text("epoch   3  train loss 0.5\n")  # a last line
    tracker = Tracker(Ledger(tmp_path / "ledger.jsonl"), tmp_path, 1, Console(file=io.StringIO()))
    tracker.queue([run])
    tracker.started(run)
    assert tracker.finished(run, code, 60.0) is True  # failed: tried again
    assert tracker.outcomes["r1"].error.startswith(error)


def test_a_run_that_exits_2_is_not_tried_again(tmp_path):
    """Exit 2 is bad input (a config or data error): the same each time, so no retry; its
    record keeps the config's fingerprint, which a rerun compares."""
    run = Run("r1", (("seed", "0"),), (), ("seed=0",))
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "sweep.log").write_text("fastrft train: error: data.root: bad\n")
    console = io.StringIO()
    tracker = Tracker(Ledger(tmp_path / "ledger.jsonl"), tmp_path, 3, Console(file=console))
    tracker.queue([run])
    tracker.started(run)
    assert tracker.finished(run, 2, 5.0) is False
    record = list(Ledger(tmp_path / "ledger.jsonl").records())[-1]
    assert record["state"] == "failed" and record["error"] == "fastrft train: error: data.root: bad"
    assert record["config"] == run.fingerprint()
    assert "not tried again" in console.getvalue()
