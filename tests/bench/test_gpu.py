"""`fastrft bench` on a GPU: every rung, CUDA graphs included, with NVML telemetry."""

import json

import pytest
import torch

from fastrft.bench.cli import main

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def test_full_ladder_on_the_gpu(tmp_path):
    main(
        [
            "--preset",
            "tiny",
            "data.batch_size=64",
            "--iters",
            "3",
            "--repeats",
            "2",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    r = json.loads((tmp_path / "r.json").read_text())
    assert [row["rung"] for row in r["rows"]] == list(range(8))
    assert r["skipped"] == [] and r["limit"]["compiled"]
    for row in r["rows"]:
        assert row["peak_memory_gib"] > 0 and row["images_per_s"] > 0
    # NVML: present wherever nvidia-ml-py and the driver are
    assert r["environment"]["driver"] and r["rows"][-1]["mean_power_w"] > 0


def test_attack_mode_fast_path_is_as_strong(tmp_path):
    main(
        [
            "--mode",
            "attack",
            "model.name=resnet18",
            "data.img_size=32",
            "data.batch_size=128",
            "attack.name=apgd",
            "attack.steps=10",
            "model.num_classes=10",
            "--json",
            str(tmp_path / "a.json"),
        ]
    )
    rows = json.loads((tmp_path / "a.json").read_text())["rows"]
    eager, fast = rows[0], rows[1]
    # bf16 + graphs against fp32 on the same model and batch: a point or two at most
    assert abs(fast["robust_acc"] - eager["robust_acc"]) <= 0.03
