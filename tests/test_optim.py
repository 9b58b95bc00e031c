"""build_optimizer's groups and settings; cosine_with_warmup against its closed form, through a
checkpoint and back; argument errors."""

import pytest
import torch
import torch.nn.functional as F

from fastrft.models import build_model
from fastrft.optim import (
    build_optimizer,
    cosine_with_warmup,
    ends_group,
    group_size,
    updates_per_epoch,
)
from fastrft.toy import toy_images
from tests.helpers import expected_lr

ALL_GROUPS = ["backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"]


def _model(name="tiny_cnn"):
    return build_model(name, 4, img_size=32)


def _lrs(opt):
    return [float(g["lr"]) for g in opt.param_groups]


@pytest.mark.parametrize("name", ["tiny_cnn", "test_vit"])
def test_groups_carry_their_lr_and_weight_decay(name):
    model = _model(name)
    opt = build_optimizer(model, lr=1e-4, head_lr=1e-2, weight_decay=0.05, head_weight_decay=0.1)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ALL_GROUPS
    want = {
        "backbone_decay": (1e-4, 0.05),
        "backbone_no_decay": (1e-4, 0.0),
        "head_decay": (1e-2, 0.1),
        "head_no_decay": (1e-2, 0.0),
    }
    assert {k: (g["lr"], g["weight_decay"]) for k, g in groups.items()} == want
    head = {id(p) for p in model.get_classifier().parameters()}
    assert {id(p) for k in ("head_decay", "head_no_decay") for p in groups[k]["params"]} == head
    for key in ("backbone_decay", "head_decay"):  # what is decayed (tests/test_models.py: which)
        assert all(p.ndim > 1 for p in groups[key]["params"])
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in model.parameters())
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_head_settings_default_to_the_backbone():
    opt = build_optimizer(_model(), lr=3e-4, weight_decay=0.02)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        (3e-4, 0.02),
        (3e-4, 0.0),
        (3e-4, 0.02),
        (3e-4, 0.0),
    ]


def test_empty_groups_are_left_out():
    model = _model()
    model.backbone.features.requires_grad_(False)
    opt = build_optimizer(model)
    assert [g["name"] for g in opt.param_groups] == ["head_decay", "head_no_decay"]
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model)


def test_fused_passes_through():
    opt = build_optimizer(_model(), fused=True)
    assert opt.defaults["fused"] is True
    _train(_model(), opt, steps=1)


def _train(model, opt, steps, sched=None):
    """``steps`` optimizer steps on toy data; the learning rates seen before each step."""
    x, y = toy_images(8, classes=4, size=8, seed=1)
    seen = []
    for _ in range(steps):
        seen.append(_lrs(opt))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return seen


@pytest.mark.parametrize(
    "total, warmup, min_ratio", [(10, 3, 0.1), (6, 0, 0.0), (5, 5, 0.5), (1, 0, 0.2)]
)
def test_lr_follows_the_closed_form_at_every_step(total, warmup, min_ratio):
    model = _model()
    opt = build_optimizer(model, lr=1e-3, head_lr=1e-2)
    sched = cosine_with_warmup(opt, total_steps=total, warmup_steps=warmup, min_lr_ratio=min_ratio)
    seen = _train(model, opt, total + 3, sched)
    bases = [1e-3, 1e-3, 1e-2, 1e-2]
    for step, lrs in enumerate(seen):
        want = [expected_lr(b, step, total, warmup, min_ratio) for b in bases]
        assert lrs == pytest.approx(want, rel=1e-12, abs=1e-15), f"step {step}"
    if warmup < total:
        assert seen[warmup] == pytest.approx(bases), "peak lr right after the warm-up"
    assert seen[-1] == pytest.approx([b * min_ratio for b in bases]), "flat after the end"


def test_checkpoint_resumes_the_same_run():
    total, warmup, split = 8, 2, 3

    def setup():
        torch.manual_seed(0)
        model = _model()
        opt = build_optimizer(model, lr=1e-2, head_lr=3e-2)
        return model, opt, cosine_with_warmup(opt, total_steps=total, warmup_steps=warmup)

    model, opt, sched = setup()
    straight = _train(model, opt, total, sched)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched = setup()
    first = _train(model, opt, split, sched)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
    model, opt, sched = setup()
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    resumed = first + _train(model, opt, total - split, sched)

    assert resumed == straight
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, final[k], rtol=0, atol=0, msg=f"{k} after resuming")


@pytest.mark.parametrize(
    "micro_batches, accumulate, sizes",
    [(7, 3, [3, 3, 1]), (6, 3, [3, 3]), (5, 1, [1] * 5), (2, 16, [2]), (16, 16, [16])],
)
def test_accumulation_groups_and_updates_per_epoch(micro_batches, accumulate, sizes):
    """Every group makes an update, the last one too where it is short."""
    assert updates_per_epoch(micro_batches, accumulate) == len(sizes)
    each = [group_size(step, micro_batches, accumulate) for step in range(micro_batches)]
    assert each == [n for n in sizes for _ in range(n)], "the group each micro-batch is in"
    ends = [step for step in range(micro_batches) if ends_group(step, micro_batches, accumulate)]
    assert ends == [sum(sizes[: k + 1]) - 1 for k in range(len(sizes))], "each group's last"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(total_steps=0), "total_steps must be >= 1"),
        (dict(total_steps=5, warmup_steps=-1), "warmup_steps"),
        (dict(total_steps=5, warmup_steps=6), "warmup_steps"),
        (dict(total_steps=5, min_lr_ratio=-0.1), "min_lr_ratio"),
        (dict(total_steps=5, min_lr_ratio=1.5), "min_lr_ratio"),
    ],
)
def test_schedule_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cosine_with_warmup(build_optimizer(_model()), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1.0), "lr must be >= 0"),
        (dict(head_lr=-1.0), "head_lr must be >= 0"),
        (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
        (dict(head_weight_decay=-0.1), "head_weight_decay must be >= 0"),
        (dict(capturable=True), "capturable=True .* CUDA parameters, found cpu"),
    ],
)
def test_optimizer_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(_model(), **kwargs)


@pytest.mark.gpu
def test_capturable_lrs_are_cuda_tensors_the_schedule_updates_in_place():
    """What CUDA-graph replays need: the step reads its lr from memory the scheduler writes."""
    model = _model().cuda()
    opt = build_optimizer(model, lr=1e-3, head_lr=1e-2, capturable=True)
    lrs = [g["lr"] for g in opt.param_groups]
    assert all(isinstance(lr, torch.Tensor) and lr.is_cuda for lr in lrs)
    sched = cosine_with_warmup(opt, total_steps=4, warmup_steps=2)
    x, y = (t.cuda() for t in toy_images(16, classes=4, size=16))
    for step in range(5):
        want = [expected_lr(b, step, 4, 2, 0.0) for b in (1e-3, 1e-3, 1e-2, 1e-2)]
        assert _lrs(opt) == pytest.approx(want, rel=1e-6), f"step {step}"
        assert all(g["lr"] is lr for g, lr in zip(opt.param_groups, lrs, strict=True))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
