"""The configs in configs/ load, and the paper's grid covers its 6 x 5 x 2 x 2 runs."""

from itertools import product
from pathlib import Path

import pytest
import timm

from fastrft.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BACKBONES = sorted((CONFIGS / "paper" / "backbones").glob("*.yaml"))
DATASETS = sorted((CONFIGS / "paper" / "datasets").glob("*.yaml"))


def test_toy_config_loads():
    cfg = load_config([CONFIGS / "toy.yaml"])
    assert cfg.model.name == "tiny_cnn" and cfg.attack.eps == pytest.approx(8 / 255)


def test_paper_grid_composes_for_every_run(tmp_path, monkeypatch):
    assert len(BACKBONES) == 6 and len(DATASETS) == 5
    monkeypatch.setenv("FASTRFT_DATA", str(tmp_path))
    for ds in DATASETS:
        (tmp_path / ds.stem).mkdir()
    runs = set()
    for backbone, dataset, eps, method in product(
        BACKBONES, DATASETS, ("4/255", "8/255"), ("fix", "hinge")
    ):
        cfg = load_config(
            [CONFIGS / "paper" / "base.yaml", backbone, dataset],
            [f"attack.eps={eps}", f"schedule.name={method}"],
        )
        assert cfg.data.root == str(tmp_path / dataset.stem)
        assert cfg.epochs == 50 and cfg.attack.steps == 7 and cfg.eval.steps == 10
        # where the paper is silent: the authors' related training code
        assert cfg.attack.best == "loss" and cfg.attack.random_start is False
        assert cfg.data.rotation == 2.0
        runs.add((cfg.model.name, cfg.data.root, cfg.attack.eps, cfg.schedule.name))
    assert len(runs) == 120


@pytest.mark.parametrize("backbone", BACKBONES, ids=lambda p: p.stem)
def test_backbones_are_timm_pretrained_names(backbone):
    cfg = load_config([backbone, CONFIGS / "toy.yaml"][::-1])
    assert cfg.model.name in timm.list_pretrained(), cfg.model.name


def test_missing_dataset_root_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTRFT_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"data.root: .*cars.* does not exist"):
        load_config([CONFIGS / "paper" / "base.yaml", CONFIGS / "paper" / "datasets" / "cars.yaml"])
