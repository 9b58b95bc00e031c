"""On a GPU: a run with every speed lever (bf16, channels_last, compile, the attack captured
in a CUDA graph, and the whole step captured) learns as the eager fp32 run does; capturing
the whole step leaves the model as it was and replays exactly the eager step."""

import contextlib
import json

import pytest
import torch

from fastrft.attacks import pgd
from fastrft.cli import main
from fastrft.config import load_config
from fastrft.engine import Trainer
from fastrft.engine.capture import capture_step, training_state
from fastrft.engine.step import TrainStep
from fastrft.objectives import make_objective
from fastrft.optim import build_optimizer, cosine_with_warmup
from fastrft.toy import TinyCNN
from tests.helpers import assert_close

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def _model_and_step():
    torch.manual_seed(0)
    model = TinyCNN(classes=5, width=8).cuda().train()
    optimizer = build_optimizer(model, lr=1e-2, capturable=True)

    def attack(x, target, eps):  # no random start: eager and replayed steps see the same x_adv
        return pgd(model, x, target, eps, steps=3, random_start=False, validate=False)

    objective = make_objective("madry")
    step = TrainStep(model, objective, optimizer, attack, autocast=contextlib.nullcontext).run
    return model, optimizer, step


def test_captured_step_leaves_the_model_and_replays_the_eager_step():
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.rand(32, 3, 12, 12, device="cuda", generator=g)
    y = torch.randint(0, 5, (32,), device="cuda", generator=g)
    eps = torch.full((32,), 8 / 255, device="cuda")

    model, optimizer, step = _model_and_step()
    before = [t.clone() for t in training_state(model, optimizer)]  # no optimizer state yet
    captured = capture_step(step, (x, y, eps), model, optimizer)
    after = list(training_state(model, optimizer))
    for a, b in zip(before, after, strict=False):
        assert torch.equal(a, b), "capture changed the model"
    assert all((t == 0).all() for t in after[len(before) :]), "optimizer state not reset"
    losses = [captured(x, y, eps)[0].clone() for _ in range(3)]

    eager_model, _, eager_step = _model_and_step()
    eager_losses = [eager_step(x, y, eps)[0] for _ in range(3)]
    assert_close(torch.stack(losses), torch.stack(eager_losses), atol=1e-5, what="losses")
    for a, b in zip(model.parameters(), eager_model.parameters(), strict=True):
        assert_close(a.detach(), b.detach(), atol=1e-5, what="graphed vs eager weights")
    assert losses[0] != losses[2], "the replays did not train"


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
        "whole_step": ["speed.graph_step=true"],
    }.items():
        main(["train", *common, *speed, f"out_dir={tmp_path / name}"])
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert "graph_step" in results["whole_step"]["speed"], "the whole-step graph did not run"
    for name in ("fast", "whole_step"):
        assert results[name]["clean_acc"] > 0.8
        assert abs(results[name]["clean_acc"] - results["eager"]["clean_acc"]) < 0.05
        assert abs(results[name]["adv_acc"] - results["eager"]["adv_acc"]) < 0.08


def test_the_schedule_fills_the_learning_rate_tensors_a_graph_reads():
    model = TinyCNN(classes=5, width=8).cuda()
    optimizer = build_optimizer(model, lr=1e-2, capturable=True)
    schedule = cosine_with_warmup(optimizer, total_steps=10, warmup_steps=2)
    tensors = [group["lr"] for group in optimizer.param_groups]
    values = []
    for _ in range(3):
        optimizer.step()
        schedule.step()
        values.append(optimizer.param_groups[0]["lr"].item())
    assert [group["lr"] for group in optimizer.param_groups] == tensors  # the same objects
    assert values[0] != values[1] != values[2]


class _Stop(Exception):
    pass


def test_a_resumed_whole_step_run_reads_its_schedule_from_the_gpu(tmp_path):
    common = [
        "epochs=3",
        "data.toy_samples=1024",
        "data.batch_size=128",
        "attack.steps=2",
        "eval.steps=2",
        "schedule.name=hinge",
        "speed.graph_step=true",
    ]

    def stop_after_epoch_1(record):
        if record["epoch"] == 1:
            raise _Stop

    cut = load_config(overrides=[*common, f"out_dir={tmp_path / 'cut'}"])
    with pytest.raises(_Stop):
        Trainer(cut, progress=False).fit(on_epoch=stop_after_epoch_1)
    resumed = Trainer(cut, progress=False)
    results = resumed.fit()
    groups = resumed.optimizer.param_groups
    assert all(g["capturable"] and g["lr"].device.type == "cuda" for g in groups)
    whole = Trainer(
        load_config(overrides=[*common, f"out_dir={tmp_path / 'whole'}"]), progress=False
    )
    expected = whole.fit()
    assert [r["lr"] for r in resumed.history] == pytest.approx([r["lr"] for r in whole.history])
    assert abs(results["clean_acc"] - expected["clean_acc"]) < 0.05
