"""`fastrft --help` and each command's help explain their options; logs reach TensorBoard."""

import pytest

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
