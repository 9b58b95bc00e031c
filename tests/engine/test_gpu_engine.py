"""On a GPU: a run with every speed lever (bf16, channels_last, compile, the attack
captured in a CUDA graph) learns as the eager fp32 run does."""

import json

import pytest

from fastrft.cli import main

pytestmark = pytest.mark.gpu


def test_all_levers_learn_like_eager(tmp_path):
    common = [
        "epochs=3",
        "data.toy_samples=2048",
        "data.batch_size=128",
        "optim.lr=1e-2",
        "data.hflip=false",
        "data.jitter=0",
        "data.rotation=0",
        "attack.steps=3",
        "eval.steps=3",
        "schedule.name=fix",
        "--no-progress",
    ]
    results = {}
    for name, speed in {
        "eager": ["speed.cuda_graphs=false", "speed.compile=false"],
        "fast": [],
    }.items():
        main(["train", *common, *speed, f"out_dir={tmp_path / name}"])
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert results["fast"]["clean_acc"] > 0.8
    assert abs(results["fast"]["clean_acc"] - results["eager"]["clean_acc"]) < 0.05
    assert abs(results["fast"]["adv_acc"] - results["eager"]["adv_acc"]) < 0.08
