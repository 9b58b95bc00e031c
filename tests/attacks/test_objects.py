"""torchattacks-style objects are thin wrappers over the functions (test_peers.py compares
them with torchattacks itself)."""

import torch

from fastrft.attacks import APGD, FFGSM, FGSM, PGD, PGDL2, apgd, fgsm, pgd


def _same(obj, fn, model, x, y, **kw):
    torch.manual_seed(7)
    a = obj(x, y)
    torch.manual_seed(7)
    b = fn(model, x, y, **kw)
    assert torch.equal(a, b), f"{obj!r} differs from {fn.__name__}"


def test_objects_equal_functions(tiny_model):
    x, y = torch.rand(3, 3, 8, 8), torch.randint(0, 5, (3,))
    _same(
        PGD(tiny_model, eps=4 / 255, alpha=1 / 255, steps=3),
        pgd,
        tiny_model,
        x,
        y,
        eps=4 / 255,
        alpha=1 / 255,
        steps=3,
    )
    _same(
        PGDL2(tiny_model, eps=0.5, alpha=0.1, steps=2),
        pgd,
        tiny_model,
        x,
        y,
        eps=0.5,
        alpha=0.1,
        steps=2,
        norm="l2",
    )
    _same(FGSM(tiny_model, eps=4 / 255), fgsm, tiny_model, x, y, eps=4 / 255, random_start=False)
    _same(FFGSM(tiny_model, eps=4 / 255), fgsm, tiny_model, x, y, eps=4 / 255, alpha=10 / 255)
    _same(
        APGD(tiny_model, norm="Linf", eps=4 / 255, steps=3, seed=None),
        apgd,
        tiny_model,
        x,
        y,
        eps=4 / 255,
        steps=3,
    )


def test_repr_and_forward(tiny_model):
    attack = PGD(tiny_model, eps=8 / 255)
    assert "eps=0.031" in repr(attack)
    x, y = torch.rand(1, 3, 5, 5), torch.tensor([2])
    assert attack.forward(x, y).shape == x.shape
