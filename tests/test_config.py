"""Configs: YAML files merged in order, dotted overrides, fractions, one-line errors."""

import pytest

from fastrft.cli import main
from fastrft.config import ConfigError, RunConfig, config_help, load_config, save_config
from tests.engine.test_train import TINY


def _yaml(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_files_and_overrides_merge_in_order(tmp_path):
    a = _yaml(tmp_path, "a.yaml", "epochs: 20\nattack:\n  eps: 8/255\n  steps: 5\n")
    b = _yaml(tmp_path, "b.yaml", "attack:\n  steps: 9\nschedule:\n  name: fix\n")
    cfg = load_config([a, b], ["attack.steps=3", "optim.lr=0.01"])
    assert cfg.epochs == 20 and cfg.attack.eps == pytest.approx(8 / 255)
    assert cfg.attack.steps == 3 and cfg.schedule.name == "fix" and cfg.optim.lr == 0.01
    assert cfg.data.batch_size == RunConfig().data.batch_size


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config([], ["attack.eps=4/255", "schedule.t1=2", "schedule.t2=0.5"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config([tmp_path / "c.yaml"])
    assert again == cfg and isinstance(again.schedule.t1, int)
    assert isinstance(again.schedule.t2, float)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["attack.epss=1"], r"attack.epss: unknown key .* did you mean 'attack.eps'"),
        (["attack.eps=-1"], "attack.eps: must be >= 0"),
        (["attack.eps=4/0"], "attack.eps: division by zero"),
        (["attack.eps=four"], "attack.eps: expected a number or a fraction"),
        (["attack.steps=abc"], "attack.steps: bad value"),
        (["attack.name=cw"], "attack.name: must be apgd, pgd or fgsm"),
        (["schedule.t1=5", "schedule.t2=2"], "schedule.t1: must not come after schedule.t2"),
        (
            ["schedule.t1=12"],
            r"schedule.t1: 12 is an int, read as an epoch, so it must lie in \[0, 10\] "
            r"\(epochs=10\); for a fraction of the run write a float in \[0, 1\] "
            r"\(schedule.t1=0.5 is halfway\)",
        ),
        (
            ["schedule.t1=1.5"],
            r"schedule.t1: 1.5 is a float, read as a fraction of the run, so it must lie in "
            r"\[0, 1\]; for an epoch write an int \(schedule.t1=1\)",
        ),
        (
            ["schedule.t2=12.0"],
            r"schedule.t2: 12.0 is a float, read as a fraction .* write an int \(schedule.t2=12\)",
        ),
        (["schedule.name=foo"], "schedule.name: must be one of fix, hinge, .*auto, got 'foo'"),
        (["schedule.name=fix", "schedule.t1=3"], "schedule: t1 has no meaning for schedule 'fix'"),
        (["schedule.t2=0.1"], r"schedule: t1 \(2 \(the default\)\) must be <= t2 \(1\)"),
        (["eval.attack=cw"], "eval.attack: must be apgd or pgd, got 'cw'"),
        (["model.name=resnt50"], "model.name: unknown model 'resnt50'.*close matches: resnet50"),
        (["model.name=resnet50.nope"], "model.name: unknown model .*timm has no tag"),
        (["epochs=0"], "epochs: must be at least 1"),
        (["data.source=npz"], "data.root: is required"),
        (["data.source=npz", "data.root=/no/such/file.npz"], "data.root: .* does not exist"),
        (["speed.compile=maybe"], "speed.compile: must be true, false or auto"),
        (["objective.name=trade"], "objective.name: must be standard, madry or trades"),
        (["epochs"], "must look like key=value"),
        (["objective.name=trades"], "attack.name: objective trades attacks its KL loss with PGD"),
        (["attack.eps=8"], "attack.eps: 8 exceeds the pixel range .* did you mean 8/255"),
        (["eval.eps_max=16"], "eval.eps_max: 16 exceeds .* did you mean 16/255"),
        (
            ["attack.eps=0.03", "eval.grid_step=1/255"],
            r"attack.eps: 0.03 is not on .* set attack.eps=8/255 or eval.grid_step=0.03/8",
        ),
        (["eval.eps_max=2/255"], "eval.eps_max: .* is below attack.eps"),
        (["eval.eps_max=8.5/255"], "eval.eps_max: .* not a whole number .* eval.eps_max=8/255"),
        (["eval.grid_step=3/255"], "attack.eps: .* not on the evaluation grid .* attack.eps=3/255"),
        (["attack.norm=l2", "attack.eps=0.5", "eval.eps_max=1.1"], "eval.eps_max=1.125"),
        (["eval.precision=fp16"], "eval.precision: must be fp32 or bf16"),
    ],
)
def test_bad_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config([], overrides)


@pytest.mark.parametrize(
    ("overrides", "grid"),
    [
        ([], (4 / 255, 1 / 255)),
        (["eval.eps_max=8/255"], (8 / 255, 1 / 255)),
        (["attack.norm=l2", "attack.eps=0.5"], (0.5, 0.0625)),
        (["attack.norm=l2", "attack.eps=0.5", "eval.eps_max=1"], (1.0, 0.0625)),
        (["attack.norm=l2", "attack.eps=3", "eval.grid_step=0.5"], (3.0, 0.5)),
        (["attack.eps=0.03"], (0.03, 0.00375)),
        (["attack.eps=0.03", "eval.grid_step=0.03/6"], (0.03, 0.005)),
        (["attack.eps=0", "eval.eps_max=8/255"], (8 / 255, 1 / 255)),
    ],
)
def test_evaluation_grid_defaults(overrides, grid):
    """1/255 steps for l_inf budgets in whole 255ths, else eps / 8 (l_2, or l_inf 0.03)."""
    assert load_config([], overrides).eval_grid() == pytest.approx(grid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack.eps=8"], "attack.eps: 8 exceeds the pixel range [0, 1] of an l_inf budget"),
        (
            ["attack.eps=0.03", "eval.grid_step=1/255", "eval.eps_max=8/255"],
            "attack.eps: 0.03 is not on the evaluation grid",
        ),
        (["attack.norm=l2", "attack.eps=0.5", "eval.eps_max=0.55"], "eval.eps_max: 0.55 is not"),
        (["eval.eps_max=2/255"], "eval.eps_max: 0.00784314 is below attack.eps"),
    ],
)
def test_bad_budgets_stop_train_before_any_epoch(tmp_path, capsys, args, message):
    """Refused at config load: exit 2, one line, and no run directory."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-progress", *TINY, "epochs=1", *args, f"out_dir={out}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists(), "no epoch may run, nothing may be written"


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([_yaml(tmp_path, "bad.yaml", "epochs: [1\n")])
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config([_yaml(tmp_path, "list.yaml", "- 1\n- 2\n")])
    with pytest.raises(ConfigError, match=r"model.nam: unknown key in .*unknown.yaml"):
        load_config([_yaml(tmp_path, "unknown.yaml", "model:\n  nam: resnet50\n")])


def test_yaml_is_read_safely(tmp_path):
    """yaml.safe_load: a Python object tag is refused, never constructed."""
    p = _yaml(tmp_path, "evil.yaml", "epochs: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([p])


def test_every_key_is_documented():
    rows = config_help()
    assert len(rows) > 30
    undocumented = [key for key, _, doc in rows if not doc]
    assert undocumented == []


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["attack.name=fgsm", "attack.norm=l2"], "attack.norm: fgsm is an l_inf attack"),
        (["attack.name=apgd", "attack.alpha=0.01"], "attack.alpha: apgd sets its own step"),
        (["attack.best=first"], "attack.best: must be loss or adversarial"),
        (["attack.name=pgd", "attack.best=adversarial"], "attack.best: only apgd"),
        (["attack.random_start=maybe"], "attack.random_start: bad value"),
    ],
)
def test_training_attack_keys_that_would_be_ignored_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config([], overrides)


def test_training_attack_defaults_follow_madry():
    """The training attack returns the highest-loss point (Madry's inner maximisation) and
    starts at random unless told otherwise; pgd and fgsm accept alpha."""
    cfg = RunConfig()
    assert cfg.attack.best == "loss" and cfg.attack.random_start is True
    cfg = load_config([], ["attack.name=pgd", "attack.alpha=0.01", "attack.random_start=false"])
    assert cfg.attack.alpha == 0.01 and cfg.attack.random_start is False


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["train", "{cfg}", "epochs", "3"], "epochs=3"),
        (["train", "{cfg}", "--epochs", "3"], "epochs=3"),
        (["train", "--epochs", "3", "{cfg}"], "epochs=3"),
        (["train", "{cfg}", "--epochs=3"], "epochs=3"),
        (["train", "{cfg}", "--attack.eps", "8/255"], "attack.eps=8/255"),
        (["train", "{cfg}", "--out-dir", "runs/x"], "out_dir=runs/x"),
        (["train", "{cfg}", "schedule.name"], "schedule.name=VALUE"),
        (["eval", "{run}", "--device", "cpu"], "device=cpu"),
        (["eval", "{run}", "seed", "3"], "seed=3"),
    ],
)
def test_a_config_key_without_equals_gets_the_override_it_meant(tmp_path, capsys, argv, meant):
    """Not "config file 'epochs' not found" nor "unrecognized arguments": one line, exit 2."""
    cfg = _yaml(tmp_path, "cfg.yaml", "epochs: 2\n")
    argv = [a.format(cfg=cfg, run=tmp_path / "run") for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print-config"] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"fastrft {argv[0]}: error:" in err and f"did you mean {meant}?" in err, err


def test_an_unknown_schedule_is_refused_before_print_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "schedule.name=foo", "--print-config"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "schedule.name: must be one of" in err
    assert "hinge" in err and capsys.readouterr().out == ""


@pytest.mark.parametrize(("value", "meaning"), [("1", "epoch 1 of 10"), ("1.0", None)])
def test_an_int_t2_of_1_warns_that_it_is_an_epoch(capsys, value, meaning):
    """t2=1 is epoch 1, t2=1.0 the end of the run: the int form, easily meant as the other,
    says how it was read and how to write the other."""
    cfg = load_config([], ["schedule.name=linear", f"schedule.t2={value}"])
    err = capsys.readouterr().err
    assert cfg.schedule.t2 == (1 if meaning else 1.0)
    if meaning:
        assert f"schedule.t2=1 is an int, read as {meaning}" in err
        assert "schedule.t2=1.0 for the end of the run" in err
    else:
        assert err == ""


@pytest.mark.parametrize("text", ["", "# nothing set yet\n\n# epochs: 3\n"])
def test_an_empty_config_file_warns_that_defaults_are_used(tmp_path, capsys, text):
    path = _yaml(tmp_path, "empty.yaml", text)
    assert load_config([path]) == RunConfig()
    err = capsys.readouterr().err
    assert f"config file {str(path)!r} is empty" in err and "defaults" in err
    assert len(err.strip().splitlines()) == 1


def test_a_flag_value_that_names_a_config_key_is_left_to_the_flag(tmp_path, capsys):
    """`--out device` writes to a file named device: no word a flag took is an override."""
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "run"), "--out", "device"])
    assert exit_info.value.code == 2 and "checkpoint" in capsys.readouterr().err
