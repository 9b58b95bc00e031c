"""Without FFCV, every command that needs it says how to install it, before reading data."""

import sys

import numpy as np
import pytest
from PIL import Image

from fastrft.cli import main
from tests.engine.test_train import TINY

INSTALL = (
    'pip install "fastrft[ffcv]"',
    "apt-get install libopencv-dev libturbojpeg0-dev pkg-config",
)


def _folder(root):
    """An ImageFolder tree of two classes, two PNGs each."""
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")


COMMANDS = {
    "data convert": lambda tmp: ["data", "convert", str(tmp / "src"), str(tmp / "out" / "d")],
    "data info": lambda tmp: ["data", "info", str(tmp / "d.train.beton")],
    "train": lambda tmp: [
        "train",
        "--no-progress",
        *TINY,
        "data.source=beton",
        f"data.root={tmp / 'd'}",
        f"out_dir={tmp / 'out' / 'run'}",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_without_ffcv_commands_say_how_to_install_it_before_reading(
    command, tmp_path, monkeypatch, capsys
):
    _folder(tmp_path / "src")
    for split in ("train", "val"):
        (tmp_path / f"d.{split}.beton").write_bytes(b"")  # never read: ffcv is missing
    opened = []
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(path))
    monkeypatch.setitem(sys.modules, "ffcv", None)  # `import ffcv` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(COMMANDS[command](tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"fastrft {command.split()[0]}: error: FFCV"), err
    assert all(step in err for step in INSTALL), err
    assert opened == [], "images were read before saying FFCV is missing"
    assert not (tmp_path / "out").exists(), "files were written before saying FFCV is missing"
