"""A checkpoint or weight file whose pickle would run code is refused: nothing runs, and the
command exits 2 with one line that never advises weights_only=False."""

from pathlib import Path

import pytest
import torch

from fastrft.cli import main
from fastrft.engine.checkpoint import load_checkpoint
from fastrft.models import build_model, load_weights
from tests.engine.test_train import TINY


class _CreatesFile:
    """Pickled, loading it would create the file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(a torch file holding a code-running object among tensors, the file it would create)."""
    victim = tmp_path / "created"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "config": "", "x": _CreatesFile(victim)}, path)
    return path, victim


def _one_refusal(text: str) -> str:
    assert len(text.strip().splitlines()) == 1, text
    assert "weights_only" not in text, text
    return text


def test_load_checkpoint_refuses_and_runs_nothing(evil):
    path, victim = evil
    with pytest.raises(ValueError, match=r"evil\.pt.* not a fastrft checkpoint") as err:
        load_checkpoint(path)
    _one_refusal(str(err.value))
    assert not victim.exists()


def test_load_weights_refuses_and_runs_nothing(evil):
    path, victim = evil
    with pytest.raises(ValueError, match=r"evil\.pt.* not a fastrft checkpoint or safetensors"):
        try:
            load_weights(build_model("tiny_cnn", 10), path)
        except ValueError as err:
            _one_refusal(str(err))
            raise
    assert not victim.exists()


@pytest.mark.parametrize("command", ["eval", "train"])
def test_cli_exits_2_with_one_line(tmp_path, capsys, evil, command):
    path, victim = evil
    argv = (
        ["eval", str(path), "device=cpu"]
        if command == "eval"
        else ["train", "--no-progress", *TINY, f"model.weights={path}", f"out_dir={tmp_path / 'r'}"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = _one_refusal(capsys.readouterr().err)
    assert exit_info.value.code == 2, err
    assert "evil.pt" in err and "not a fastrft checkpoint" in err
    assert not victim.exists()
