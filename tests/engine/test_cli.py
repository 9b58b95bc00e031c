"""`fastrft --help` and each command's help explain their options; logs reach TensorBoard."""

import importlib
import importlib.metadata
import json
import subprocess
import sys

import pytest

import fastrft
from fastrft.cli import main
from tests.engine.test_train import TINY


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["train", "eval", "demo"]),
        (["train"], ["--help-config", "--print-config", "--no-progress", "key=value"]),
        (["eval"], ["--eps-max", "--attack", "--steps", "--grid-step", "--out", "autoattack"]),
    ],
)
def test_help_explains_every_option(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out, f"{word} missing from `fastrft {' '.join(argv)} --help`"


# runs `fastrft` command lines in one fresh interpreter, each to its exit, and names the
# first after which torch is imported
TORCH_FREE = """
import contextlib, io, json, sys
from fastrft.cli import main
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(argv)
    assert out.getvalue().startswith(("usage: fastrft", "fastrft 0")), (argv, out.getvalue())
    if "torch" in sys.modules:
        sys.exit(f"`fastrft {' '.join(argv)}` imported torch")
"""
HELP = [["--help"], ["--version"], ["train", "--help"], ["eval", "--help"], ["data", "--help"]]
HELP += [
    ["data", "convert", "--help"],
    *([c, "--help"] for c in ("bench", "demo", "sweep", "report", "weights")),
    *(["weights", action, "--help"] for action in ("import", "list")),
]


def test_help_and_version_start_without_torch():
    """Loading torch takes seconds: asking how to call a command must not wait for it."""
    run = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, json.dumps(HELP)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_version_is_the_installed_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"fastrft {importlib.metadata.version('fastrft')}\n"


def test_version_of_a_source_tree_never_installed(capsys, monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"fastrft {fastrft.__version__}\n"


def test_help_config_and_print_config(capsys):
    main(["train", "--help-config"])
    listing = capsys.readouterr().out
    assert "attack.eps" in listing and "schedule.t1" in listing and "speed.cuda_graphs" in listing
    main(["train", "--print-config", "attack.eps=8/255", "epochs=3"])
    assert "eps: 0.0313" in capsys.readouterr().out


def test_tensorboard_receives_the_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    main(["train", "--no-progress", *TINY, "epochs=2", "schedule.name=fix", f"out_dir={out}"])
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "val_clean_acc", "val_adv_acc", "eps", "lr"} <= set(tags)
    assert [e.step for e in events.Scalars("train_loss")] == [0, 1]


@pytest.mark.parametrize(
    ("argv", "module", "function"),
    [
        (["data", "info", "x.beton"], "fastrft.data.convert", "beton_info"),
        (["data", "convert", "src", "out"], "fastrft.data.convert", "convert"),
        (["report", "runs"], "fastrft.report.cli", "main"),
        (["bench"], "fastrft.bench.cli", "run"),
    ],
)
def test_ctrl_c_promises_a_resume_only_where_there_is_one(
    argv, module, function, capsys, monkeypatch
):
    """Every command used to say "rerun the same command to resume from the last checkpoint",
    which only train, sweep and the demo (whose runs are train runs) can do."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and "interrupted" in err, err
    assert "resume" not in err and "checkpoint" not in err, err
