"""FLOP counting: the formulas' totals for known layers, backward passes included, and a
training step's count growing by one input-gradient pass per attack step."""

import pytest
import torch
from torch import nn

from fastrft.bench.flops import count_flops, step_flops
from fastrft.bench.ladder import RUNGS, fresh_model, random_batch
from tests.bench.test_ladder import workload


def test_counts_forward_input_gradient_and_full_backward():
    b, c, k, size, out = 3, 5, 3, 11, 7
    model = nn.Sequential(nn.Conv2d(c, 4, k), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9 * 9, out))
    conv = 2 * b * 4 * 9 * 9 * c * k * k  # multiply-adds of every output element, times 2
    linear = 2 * b * 4 * 9 * 9 * out
    x = torch.rand(b, c, size, size, requires_grad=True)
    assert count_flops(lambda: model(x)) == conv + linear
    # the input's gradient: one more product per layer; a weight backward: one more again
    assert count_flops(lambda: torch.autograd.grad(model(x).sum(), [x])) == 2 * (conv + linear)
    assert count_flops(lambda: model(x).sum().backward()) == 3 * (conv + linear)


def test_each_attack_step_adds_one_input_gradient_pass():
    w2, w4 = workload("pgd", steps=2), workload("pgd", steps=4)
    model = fresh_model(w2).eval()
    x, _ = random_batch(w2, channels_last=False)
    x.requires_grad_()
    one_pass = count_flops(lambda: torch.autograd.grad(model(x).sum(), [x]))
    assert one_pass > 0
    assert step_flops(w4, RUNGS[0]) - step_flops(w2, RUNGS[0]) == 2 * one_pass


@pytest.mark.parametrize("name", ["apgd", "pgd"])
def test_a_rung_counts_its_own_attacks_passes(name):
    """AutoAttack's APGD (the baseline, rungs 0-3) takes one input gradient more than
    fastrft's (rungs 4-7: its registry's passes); PGD takes as many either way."""
    w = workload(name, steps=4)
    model = fresh_model(w).eval()
    x, _ = random_batch(w, channels_last=False)
    x.requires_grad_()
    one_pass = count_flops(lambda: torch.autograd.grad(model(x).sum(), [x]))
    extra = {"apgd": one_pass, "pgd": 0}[name]
    assert step_flops(w, RUNGS[0]) - step_flops(w, RUNGS[4]) == extra
    assert step_flops(w, RUNGS[3]) == step_flops(w, RUNGS[0])  # levers keep the arithmetic
