"""The checks before a sweep starts (whose root and run directories, no second sweep on the
same root) and what a rerun has left to do."""

import json

import pytest

from fastrft.cli import main
from fastrft.errors import EXIT_BUSY
from fastrft.sweep.ledger import Ledger
from fastrft.sweep.plan import locked, mark_root, mark_run, plan
from fastrft.sweep.spec import load_spec

from .helpers import write_sweep


def _refused(capsys, path, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_another_sweeps_root_is_refused(capsys, tmp_path):
    mark_root(load_spec(write_sweep(tmp_path, {"seed": [0]}, name="first")))
    second = write_sweep(tmp_path, {"seed": [0]}, name="second")
    _refused(capsys, second, "holds the sweep 'first'")
    changed = write_sweep(tmp_path, {"seed": [0]}, name="first", overrides={"epochs": 9})
    _refused(capsys, changed, "holds the sweep 'first'")  # same name, another base config
    assert not (tmp_path / "runs" / "seed=0").exists()


def test_a_run_directory_from_another_sweep_is_refused(capsys, tmp_path):
    spec = load_spec(write_sweep(tmp_path, {"seed": [0, 1]}))
    mark_root(spec)
    other = load_spec(write_sweep(tmp_path / "..", {"seed": [1]}, name="other"))
    stray = spec.root / "seed=1"
    stray.mkdir()
    (stray / "sweep.json").write_text(json.dumps({"sweep": "other", "run": "seed=1"}))
    _refused(capsys, spec.path, "run directory")
    (stray / "sweep.json").unlink()  # a run directory made by hand
    _refused(capsys, spec.path, "does not belong to the sweep 'tiny'")
    assert other.name == "other" and not (spec.root / "ledger.jsonl").exists()


def test_a_root_holding_other_files_is_refused(capsys, tmp_path):
    path = write_sweep(tmp_path, {"seed": [0]})
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    _refused(capsys, path, "is not empty and holds no sweep")


def test_a_second_sweep_on_the_same_root_is_refused(tmp_path):
    root = tmp_path / "runs"
    refused = pytest.raises(ValueError, match="another `fastrft sweep` is running")
    with locked(root), refused, locked(root):
        pass
    with locked(root):  # released
        pass


def test_plan_recovers_what_a_killed_sweep_could_not_record(tmp_path):
    spec = load_spec(write_sweep(tmp_path, {"seed": [0, 1, 2]}))
    runs = spec.runs()
    ledger = Ledger(spec.root / "ledger.jsonl")
    spec.root.mkdir()
    for run in runs:
        mark_run(spec, run)
        ledger.append(run.id, "running", attempt=1)
    results = {"clean_acc": 0.9, "adv_acc": 0.5, "expected_robustness": 0.7}
    (spec.root / runs[0].id / "results.json").write_text(json.dumps(results))
    ledger.append(runs[2].id, "failed", attempt=1, exit_code=1)
    work = plan(spec, runs, ledger)
    assert [r.id for r in work.todo] == [runs[1].id, runs[2].id]
    assert work.finished == {runs[0].id: results}
    last = ledger.last()
    assert last[runs[0].id]["state"] == "done" and last[runs[0].id]["recovered"]
    assert last[runs[1].id]["state"] == "interrupted"
    assert last[runs[2].id]["state"] == "failed"
    plan(spec, runs, ledger)  # nothing new to record on a second look
    assert len(list(ledger.records())) == 6


def test_a_run_failed_on_bad_input_is_left_alone_until_asked_or_changed(tmp_path):
    """Exit 2 (a config or data error) fails the same way each time: a rerun skips the run
    unless --retry-failed asks for it or its config changed since; other failures rerun, a run
    directory another process held (exit 75) among them."""
    spec = load_spec(write_sweep(tmp_path, {"seed": [0, 1, 2]}))
    bad, crashed, busy = spec.runs()
    ledger = Ledger(spec.root / "ledger.jsonl")
    spec.root.mkdir()
    error = "fastrft train: error: broken.npz: not a readable .npz file"
    ledger.append(bad.id, "failed", exit_code=2, error=error, config=bad.fingerprint())
    ledger.append(crashed.id, "failed", exit_code=1, error="Traceback")
    held = "fastrft train: error: another run is using runs/x (pid 7 on host, started ...)"
    ledger.append(busy.id, "failed", exit_code=EXIT_BUSY, error=held, config=busy.fingerprint())
    work = plan(spec, [bad, crashed, busy], ledger)
    assert [r.id for r in work.todo] == [crashed.id, busy.id] and work.refused == {bad.id: error}
    assert [r.id for r in plan(spec, [bad], ledger, retry_failed=True).todo] == [bad.id]
    changed = load_spec(write_sweep(tmp_path, {"seed": [0]}, overrides={"epochs": 3}))
    assert changed.runs()[0].fingerprint() != bad.fingerprint()
    assert [r.id for r in plan(changed, changed.runs(), ledger).todo] == [bad.id]


def test_a_root_that_cannot_be_locked_is_a_one_line_error(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr("fcntl.flock", no_locks)
    with (
        pytest.raises(ValueError, match="on a filesystem that supports file locks"),
        locked(tmp_path / "root"),
    ):
        pass


def test_a_root_under_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    path = write_sweep(tmp_path, {"seed": [0]}, root=str(tmp_path / "notes.txt" / "runs"))
    _refused(capsys, path, f"{tmp_path / 'notes.txt'} is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine"
