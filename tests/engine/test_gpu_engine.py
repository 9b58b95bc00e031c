"""On a GPU: CUDA-graph capture leaves the model as it was, a replayed training step equals
an eager one, and a run with every speed lever learns as the eager run does."""

import json

import pytest
import torch
import torch.nn.functional as F

from fastrft.cli import main
from fastrft.engine.graphs import CapturedCall
from fastrft.optim import build_optimizer
from fastrft.toy import TinyCNN
from tests.helpers import assert_close

pytestmark = pytest.mark.gpu


def _setup():
    torch.manual_seed(0)
    model = TinyCNN(classes=5, width=8).cuda().train()
    opt = build_optimizer(model, lr=1e-2, capturable=True)
    x, y = torch.rand(32, 3, 12, 12, device="cuda"), torch.randint(0, 5, (32,), device="cuda")
    return model, opt, x, y


def _step(model, opt):
    def step(x, y):
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _state(model, opt):
    return [t.clone() for t in [*model.parameters(), *model.buffers()]] + [
        v.clone() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
    ]


def test_capture_leaves_state_and_replay_equals_an_eager_step():
    model, opt, x, y = _setup()
    before = _state(model, opt)
    captured = CapturedCall(
        _step(model, opt),
        (x, y),
        preserve=lambda: [
            *model.parameters(),
            *model.buffers(),
            *(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
        ],
    )
    after = _state(model, opt)
    for a, b in zip(before, after[: len(before)], strict=True):
        assert torch.equal(a, b), "capture changed the model"
    assert all((t == 0).all() for t in after[len(before) :]), "optimizer state not reset"
    captured(x, y)
    graphed = [p.clone() for p in model.parameters()]

    model2, opt2, _, _ = _setup()
    _step(model2, opt2)(x, y)
    for a, b in zip(graphed, model2.parameters(), strict=True):
        assert_close(a, b.detach(), atol=1e-6, what="graphed vs eager step")


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
