"""A run's out_dir is checked before its data and model are built: one that cannot be made or
written, or a run directory whose config.yaml is corrupt, is refused in one line (exit 2),
and nothing is created there or changed."""

import os

import pytest

from fastrft.cli import main
from fastrft.engine import trainer as trainer_module
from tests.engine.test_train import TINY, _files


def _refused(out_dir, capsys, monkeypatch) -> str:
    """`fastrft train` on ``out_dir``, which must be refused before the data are read: its
    one line of error."""

    def read_data(*args, **kwargs):
        raise AssertionError("the data were loaded before out_dir was checked")

    monkeypatch.setattr(trainer_module, "build_loaders", read_data)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-progress", *TINY, f"out_dir={out_dir}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_an_out_dir_that_is_a_file_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    err = _refused(out, capsys, monkeypatch)
    assert f"out_dir: {out} is a file" in err, err
    assert _files(tmp_path) == {out: b"mine"}


def test_an_out_dir_under_a_file_is_refused(tmp_path, capsys, monkeypatch):
    """Testable as root, unlike permissions: no one can make a folder inside a file."""
    (tmp_path / "notes.txt").write_text("mine")
    err = _refused(tmp_path / "notes.txt" / "run", capsys, monkeypatch)
    assert f"{tmp_path / 'notes.txt'} is a file" in err, err
    assert _files(tmp_path) == {tmp_path / "notes.txt": b"mine"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("inside", [True, False])
def test_an_out_dir_in_a_read_only_folder_is_refused(tmp_path, capsys, monkeypatch, inside):
    """A read-only out_dir, or one to be made in a read-only folder."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        err = _refused(folder / "run" if inside else folder, capsys, monkeypatch)
    finally:
        folder.chmod(0o755)
    assert f"{folder} is not writable" in err, err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [("epochs: [3, : oops", "is not valid YAML"), ("", "is empty"), ("- 3", "mapping")],
)
def test_a_corrupt_config_yaml_in_the_run_directory_is_named(
    tmp_path, capsys, monkeypatch, text, reason
):
    """A config.yaml cut short or garbled (no checkpoint yet) used to end in a traceback
    after the data and model were built."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(text)
    before = _files(out)
    err = _refused(out, capsys, monkeypatch)
    assert f"{out / 'config.yaml'}" in err and reason in err, err
    assert _files(out) == before and sorted(out.iterdir()) == [out / "config.yaml"]
