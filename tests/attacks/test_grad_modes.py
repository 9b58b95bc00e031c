"""Attacks work where evaluation loops call them: under torch.no_grad() and under
torch.inference_mode(), on inputs made there too, with the same result as with grad on."""

import pytest
import torch

from fastrft.attacks import APGD, FFGSM, FGSM, PGD, PGDL2, apgd, fgsm, pgd

ATTACKS = {
    "pgd": lambda m, x, y: pgd(m, x, y, 8 / 255, steps=2),
    "pgd-l2": lambda m, x, y: pgd(m, x, y, 0.5, steps=2, norm="l2"),
    "fgsm": lambda m, x, y: fgsm(m, x, y, 8 / 255),
    "apgd": lambda m, x, y: apgd(m, x, y, 8 / 255, steps=3),
    "apgd-loss": lambda m, x, y: apgd(m, x, y, 8 / 255, steps=3, best="loss"),
    "apgd-dlr": lambda m, x, y: apgd(m, x, y, 8 / 255, steps=3, loss="dlr"),
    "PGD": lambda m, x, y: PGD(m, steps=2)(x, y),
    "PGDL2": lambda m, x, y: PGDL2(m, steps=2)(x, y),
    "FGSM": lambda m, x, y: FGSM(m)(x, y),
    "FFGSM": lambda m, x, y: FFGSM(m)(x, y),
    "APGD": lambda m, x, y: APGD(m, steps=3)(x, y),
}


def _inputs():
    return torch.rand(3, 3, 9, 7), torch.randint(0, 5, (3,))


def _run(name, model, x, y):
    torch.manual_seed(11)
    return ATTACKS[name](model, x, y)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_under_no_grad_same_as_with_grad(tiny_model, name):
    x, y = _inputs()
    expected = _run(name, tiny_model, x, y)
    with torch.no_grad():
        got = _run(name, tiny_model, x, y)
    assert torch.equal(got, expected), f"{name} under no_grad differs from the grad-on run"
    assert not torch.equal(expected, x), f"{name} did not move"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_under_inference_mode_same_as_with_grad(tiny_model, name):
    """Inputs created in inference mode (as a loader inside it makes them) are attacked too;
    the result is an ordinary tensor the caller may use anywhere."""
    x, y = _inputs()
    expected = _run(name, tiny_model, x, y)
    with torch.inference_mode():
        x_inf, y_inf = x.clone(), y.clone()
        got = _run(name, tiny_model, x_inf, y_inf)
        assert torch.is_inference_mode_enabled(), "the caller's inference mode was left"
    assert torch.equal(got, expected), f"{name} under inference_mode differs from the grad-on run"
    assert not got.is_inference() and not got.requires_grad
    assert torch.is_grad_enabled()
