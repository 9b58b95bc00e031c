"""The bench's workload config: presets are YAML files under configs/bench read by the run
configs' loader, key=value overrides apply over them, and a bad key is one line naming it."""

import re

import pytest

from fastrft.bench.config import default_preset, load_bench_config, preset_names
from fastrft.config import ConfigError


def test_every_preset_file_loads():
    assert set(preset_names()) >= {"cifar", "paper", "resnet50", "tiny", "vit_b16"}
    for name in preset_names():
        load_bench_config(name)


def test_a_preset_files_values():
    cfg = load_bench_config("cifar")
    assert (cfg.model.name, cfg.model.num_classes) == ("resnet18", 10)
    assert (cfg.data.img_size, cfg.data.batch_size) == (32, 512)
    assert (cfg.attack.name, cfg.attack.steps, cfg.attack.eps) == ("pgd", 10, 8 / 255)
    assert (cfg.images, cfg.epochs) == (50000, 50)
    assert cfg.targets.train.speedup == 8.0 and cfg.targets.attack.speedup is None
    paper = load_bench_config("paper")
    assert paper.attack.eps == pytest.approx(4 / 255)  # "4/255" in the file
    assert (paper.attack.norm, paper.objective.name) == ("linf", "madry")  # the defaults


def test_overrides_apply_over_the_preset():
    cfg = load_bench_config(
        "tiny", ["model.name=small_cnn", "data.batch_size=64", "attack.eps=8/255", "seed=3"]
    )
    assert (cfg.model.name, cfg.data.batch_size, cfg.seed) == ("small_cnn", 64, 3)
    assert cfg.attack.eps == pytest.approx(8 / 255)
    assert (cfg.data.img_size, cfg.attack.steps) == (16, 2)  # the rest: the preset's
    assert cfg.record("tiny")["batch_size"] == 64


def test_a_yaml_file_of_ones_own_is_a_preset(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {name: tiny_cnn, num_classes: 3}\ndata: {img_size: 8}\n")
    cfg = load_bench_config(str(mine), ["attack.name=fgsm"])
    assert (cfg.model.num_classes, cfg.data.img_size, cfg.attack.name) == (3, 8, "fgsm")


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        (
            "tiny",
            ["attack.stpes=3"],
            "attack.stpes: unknown key in the command line; did you mean 'attack.steps'?",
        ),
        (
            "tiny",
            ["no_such_key=1"],
            "no_such_key: unknown key in the command line; `fastrft bench --help` lists the keys",
        ),
        ("tiny", ["model.name=no_such_model_xyz"], "model.name: "),
        ("tiny", ["targets.train.limit=85"], "targets.train.limit: is a fraction of the limit"),
        ("tiny", ["images=0"], "images: must be at least 1, or unset"),
        ("tiny", ["device=tpu"], "device: must be auto, cuda, cuda:N or cpu, got 'tpu'"),
        ("resnt50", [], "--preset: no preset 'resnt50'; did you mean 'resnet50'?"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_it(preset, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_bench_config(preset, overrides)
    assert "\n" not in str(err.value)


def test_the_default_preset_follows_the_device_and_the_model():
    assert default_preset([], cuda=False) == "tiny"
    assert default_preset([], cuda=True) == "resnet50"
    assert default_preset(["device=cpu"], cuda=True) == "tiny"
    assert default_preset(["model.name=resnet18"], cuda=False) == "resnet50"
