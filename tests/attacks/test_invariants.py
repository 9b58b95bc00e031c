"""Properties every attack keeps, on random inputs (hypothesis): inside the ball, inside
[0, 1], dtype and layout kept, output detached, the model left exactly as found."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrft.attacks import apgd, fgsm, pgd

ATTACKS = {
    "pgd-linf": lambda m, x, y, eps, **kw: pgd(m, x, y, eps, steps=2, **kw),
    "pgd-l2": lambda m, x, y, eps, **kw: pgd(m, x, y, 8 * eps, steps=2, norm="l2", **kw),
    "fgsm": lambda m, x, y, eps, **kw: fgsm(m, x, y, eps, **kw),
    "apgd-linf": lambda m, x, y, eps, **kw: apgd(m, x, y, eps, steps=3, **kw),
    "apgd-l2": lambda m, x, y, eps, **kw: apgd(m, x, y, 8 * eps, steps=3, norm="l2", **kw),
    "apgd-dlr": lambda m, x, y, eps, **kw: apgd(m, x, y, eps, steps=3, loss="dlr", **kw),
}
L2_SCALE = {"pgd-l2": 8, "apgd-l2": 8}


def _state(model):
    return {
        "params": copy.deepcopy(dict(model.named_parameters())),
        "buffers": copy.deepcopy(dict(model.named_buffers())),
        "grads": {
            n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()
        },
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
    }


def _assert_same_state(before, after):
    assert before["flags"] == after["flags"], "requires_grad flags changed"
    assert before["modes"] == after["modes"], "train/eval modes changed"
    for n, p in before["params"].items():
        assert torch.equal(p, after["params"][n]), f"parameter {n} changed"
    for n, b in before["buffers"].items():
        assert torch.equal(b, after["buffers"][n]), f"buffer {n} changed (eval-mode attack)"
    for n, g in before["grads"].items():
        h = after["grads"][n]
        assert (g is None) == (h is None) and (g is None or torch.equal(g, h)), f"{n}.grad changed"


def _distance(x_adv, x, norm):
    d = (x_adv.float() - x.float()).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(ATTACKS)),
    n=st.integers(1, 5),
    hw=st.tuples(st.integers(3, 13), st.integers(3, 13)),
    eps=st.floats(0.0, 16 / 255),
    per_sample=st.booleans(),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ball_box_layout_and_model_state(
    tiny_model, name, n, hw, eps, per_sample, channels_last, seed
):
    torch.manual_seed(seed)
    x = torch.rand(n, 3, *hw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (n,))
    budget = torch.rand(n) * eps if per_sample else eps
    before = _state(tiny_model)
    x_adv = ATTACKS[name](tiny_model, x, y, budget)
    _assert_same_state(before, _state(tiny_model))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.stride() == x.stride(), "memory layout not preserved"
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    norm = "l2" if name in L2_SCALE else "linf"
    limit = torch.as_tensor(budget, dtype=torch.float32) * L2_SCALE.get(name, 1)
    dist = _distance(x_adv, x, norm)
    assert (dist <= limit + 1e-6).all(), f"outside the ball: {dist} > {limit}"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_zero_budget_returns_x(tiny_model, name):
    x = torch.rand(3, 3, 9, 7)
    y = torch.randint(0, 5, (3,))
    assert torch.equal(ATTACKS[name](tiny_model, x, y, 0.0), x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["pgd-linf", "apgd-linf"])
def test_low_precision_inputs(tiny_model, name, dtype):
    """Half-precision pixels stay half precision; the ball holds up to one rounding step."""
    x = torch.rand(4, 3, 8, 8).to(dtype)
    y = torch.randint(0, 5, (4,))
    tiny_model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = ATTACKS[name](tiny_model, x, y, 8 / 255)
    assert x_adv.dtype == dtype
    ulp = 2**-8 if dtype == torch.bfloat16 else 2**-11
    assert (_distance(x_adv, x, "linf") <= 8 / 255 + ulp).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_no_weight_gradients_are_computed(tiny_model, name):
    """Hooks on every parameter that requires grad would fire if autograd computed its
    gradient; with or without freezing, the attack must ask for the input gradient only."""
    fired = []
    for p in tiny_model.parameters():
        if p.requires_grad:
            p.register_hook(lambda g: fired.append(g.shape))
    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, 5, (2,))
    for freeze in (True, False):
        ATTACKS[name](tiny_model, x, y, 4 / 255, freeze_params=freeze)
    assert fired == []


def test_train_mode_is_honoured_and_restored(tiny_model):
    """model_mode='train' runs BatchNorm on batch statistics (its buffers move), then the
    modes are put back as they were."""
    tiny_model.eval()
    before = tiny_model.features[1].running_mean.clone()
    pgd(
        tiny_model,
        torch.rand(4, 3, 8, 8),
        torch.randint(0, 5, (4,)),
        4 / 255,
        steps=1,
        model_mode="train",
    )
    assert not torch.equal(before, tiny_model.features[1].running_mean)
    assert not any(m.training for m in tiny_model.modules())


def test_state_restored_when_the_model_raises(tiny_model):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_model

        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, torch.rand(2, 3, 8, 8), torch.randint(0, 5, (2,)), 4 / 255)
    _assert_same_state(before, _state(model))
