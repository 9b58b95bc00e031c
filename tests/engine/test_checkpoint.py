"""Checkpoint rotation: a corrupt ``last.pt`` never pushes the good ``prev.pt`` out, a
fallback says so, and two unreadable files say why each is unreadable."""

import os

import pytest
import torch

from fastrft.engine.checkpoint import Checkpointer, load_checkpoint


def _state(epoch):
    return {"model": {"w": torch.full((2,), float(epoch))}, "epoch": epoch}


def _saved(folder, *epochs):
    checkpointer = Checkpointer(folder)
    for epoch in epochs:
        checkpointer.save(_state(epoch))
    return checkpointer


@pytest.mark.parametrize("loaded_first", [True, False])
def test_a_corrupt_last_is_replaced_and_the_good_prev_kept(tmp_path, loaded_first):
    """A resume that fell back to prev.pt, then saved: prev.pt must still be readable (it
    used to receive the corrupt last.pt, so a crash then left nothing to resume from)."""
    _saved(tmp_path, 0, 1)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    warnings = []
    checkpointer = Checkpointer(tmp_path, warn=warnings.append)
    if loaded_first:
        assert checkpointer.load()["epoch"] == 0
        assert len(warnings) == 1 and "last.pt" in warnings[0], warnings
        assert "prev.pt" in warnings[0] and "\n" not in warnings[0], warnings
    checkpointer.save(_state(1))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "prev.pt")["epoch"] == 0


def test_a_good_last_rotates_into_prev(tmp_path):
    _saved(tmp_path, 0, 1, 2)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "prev.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]


def test_no_readable_checkpoint_says_why_for_each_file(tmp_path):
    _saved(tmp_path, 0, 1)
    (tmp_path / "last.pt").write_bytes(b"")  # a write cut short
    (tmp_path / "prev.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError) as info:
        Checkpointer(tmp_path).load()
    message = str(info.value)
    assert "\n" not in message
    assert "last.pt" in message and "is empty" in message, message
    assert "prev.pt" in message, message


def test_a_run_removes_the_temporary_files_of_saves_cut_short(tmp_path):
    """A save killed mid-write leaves .last.pt.tmp-PID: the next run in the directory, the
    only process writing there while it holds the directory's lock, removes every one."""
    from fastrft.cli import main
    from tests.engine.test_train import TINY

    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    notes = folder / "notes.txt"  # not a checkpoint's temporary file: kept
    notes.write_text("mine")
    command = ["train", "--no-progress", *TINY, "epochs=1", "data.toy_samples=64", f"out_dir={run}"]
    for pid in (2**22 + 1, os.getpid()):  # past Linux's largest pid (never alive), this one's
        (folder / f".last.pt.tmp-{pid}").write_bytes(b"half a checkpoint")
    main(command)  # starts the run
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "notes.txt"]
    (folder / f".last.pt.tmp-{os.getpid()}").write_bytes(b"half a checkpoint")
    main(command)  # finds it finished
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "notes.txt"]
