"""Random starts keyed by sample ids (``seed`` and ``ids``): an image attacked alone comes
back as it does inside a larger, permuted batch, so a sharded evaluation's result does not
depend on the number of ranks or the batch size."""

import importlib

import pytest
import torch

from fastrft import attack_registry
from fastrft.attacks import apgd, fgsm, pgd
from fastrft.kernels import random_start
from fastrft.toy import TinyCNN
from tests.helpers import assert_close

ATTACKS = {
    "pgd-linf": lambda *a, **kw: pgd(*a, 8 / 255, steps=3, **kw),
    "pgd-l2": lambda *a, **kw: pgd(*a, 0.5, steps=3, norm="l2", **kw),
    "apgd-linf": lambda *a, **kw: apgd(*a, 8 / 255, steps=3, **kw),
    "apgd-l2": lambda *a, **kw: apgd(*a, 0.5, steps=3, norm="l2", restarts=2, **kw),
    "fgsm": lambda *a, **kw: fgsm(*a, 8 / 255, **kw),
}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TinyCNN(classes=5, width=4).eval()


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_image_alone_gets_what_it_gets_in_a_batch(net, name, backend):
    attack = ATTACKS[name]
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    ids = torch.tensor([40, 7, 1000, 3, 12, 5])
    perm = torch.tensor([4, 2, 0, 5, 3, 1])
    batch = attack(net, x[perm], y[perm], seed=9, ids=ids[perm], backend=backend)
    alone = attack(net, x[2:3], y[2:3], seed=9, ids=ids[2:3], backend=backend)
    assert not torch.equal(alone, x[2:3]), "no attack happened"
    if name.endswith("l2"):
        # the model's logits and input gradients for one image differ in the last bit between
        # a batch of 1 and of 6 on CPU (oneDNN's convolutions block by batch size), and an l2
        # step carries that through the gradient's norm; its start is exact (kernel tests),
        # and another start would be eps / sqrt(d) ~ 0.04 away per element
        assert_close(batch[1:2], alone, atol=1e-6, what="image 2 in a batch")
    else:
        # l_inf steps take the gradient's sign, which those last bits do not move
        assert torch.equal(batch[1:2], alone), "image 2 is attacked from another start in a batch"


@pytest.mark.parametrize("name", attack_registry.names("evaluation"))
def test_evaluation_attacks_take_seed_and_ids(net, name):
    run = attack_registry.ATTACKS[name].run()
    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, 5, (2,))
    settings = attack_registry.ATTACKS[name].settings(norm="linf", steps=1)
    a = run(net, x, y, 8 / 255, seed=1, ids=torch.tensor([5, 6]), **settings)
    b = run(net, x.flip(0), y.flip(0), 8 / 255, seed=1, ids=torch.tensor([6, 5]), **settings)
    assert torch.equal(a, b.flip(0))


def test_apgd_restarts_start_from_successive_seeds(net, monkeypatch):
    seeds = []

    def recording(x, eps, norm, *, seed=None, ids=None, backend="auto"):
        seeds.append(seed)
        return random_start(x, eps, norm, seed=seed, ids=ids, backend=backend)

    # the package's attribute apgd is the function: patch the module's name
    monkeypatch.setattr(
        importlib.import_module("fastrft.attacks.apgd"), "random_start_in_ball", recording
    )
    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, 5, (2,))
    apgd(net, x, y, 8 / 255, steps=1, restarts=3, seed=40, ids=torch.tensor([1, 2]))
    assert seeds == [40, 41, 42], "restarts must not repeat one start"
