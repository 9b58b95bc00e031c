"""Attacks work on any nn.Module that maps pixels to logits: timm and torchvision models,
a compiled model, a batch of one, odd image sizes."""

import pytest
import timm
import torch
import torchvision

from fastrft.attacks import apgd, fgsm, pgd
from fastrft.models import Normalized
from tests.helpers import assert_close


def _timm(name, size):
    net = (
        timm.create_model(name, pretrained=False, num_classes=5, img_size=size)
        if "vit" in name
        else timm.create_model(name, pretrained=False, num_classes=5)
    )
    cfg = net.pretrained_cfg
    return Normalized(net, cfg["mean"], cfg["std"]).eval()


@pytest.mark.parametrize(
    ("name", "size"), [("test_vit", 32), ("test_convnext", 35), ("test_resnet", 33)]
)
@pytest.mark.parametrize("attack", ["pgd", "apgd", "fgsm"])
def test_timm_models(name, size, attack):
    model = _timm(name, size)
    x, y = torch.rand(2, 3, size, size), torch.randint(0, 5, (2,))
    fn = {
        "pgd": lambda: pgd(model, x, y, 8 / 255, steps=2),
        "apgd": lambda: apgd(model, x, y, 8 / 255, steps=2),
        "fgsm": lambda: fgsm(model, x, y, 8 / 255),
    }[attack]
    x_adv = fn()
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert not torch.equal(x_adv, x), "the attack did not move"


def test_torchvision_model_batch_of_one_odd_size():
    net = torchvision.models.resnet18(num_classes=4).eval()
    model = Normalized(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x, y = torch.rand(1, 3, 37, 29), torch.tensor([3])
    x_adv = apgd(model, x, y, 4 / 255, steps=3)
    assert x_adv.shape == (1, 3, 37, 29) and (x_adv - x).abs().max() <= 4 / 255 + 1e-6


@pytest.mark.slow
def test_compiled_model_gives_the_same_attack(tiny_model):
    """torch.compile the model (not the attack: autograd.grad breaks Dynamo's graph); the
    attack on the compiled model follows the eager one."""
    tiny_model.eval()
    compiled = torch.compile(tiny_model, dynamic=False)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    eager = pgd(tiny_model, x, y, 8 / 255, steps=3, random_start=False)
    fast = pgd(compiled, x, y, 8 / 255, steps=3, random_start=False)
    assert_close(fast, eager, atol=1e-6, what="attack on the compiled model")


def test_strided_view_input(tiny_model):
    """A strided view (every other column) is neither NCHW- nor NHWC-dense: it is attacked
    through a contiguous copy and the result is right."""
    base = torch.rand(3, 3, 8, 16)
    x, y = base[..., ::2], torch.randint(0, 5, (3,))
    x_adv = pgd(tiny_model, x, y, 4 / 255, steps=2)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 4 / 255 + 1e-6


class LinearInTheSum(torch.nn.Module):
    """Logits linear in the image's pixel sum: autograd returns the input gradient as an
    expanded view (stride 0), which the attacks must not write into."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]) / 100)

    def forward(self, x):
        return self.w * x.sum(dim=(1, 2, 3), keepdim=True).flatten(1)


@pytest.mark.parametrize(
    ("attack", "norm"),
    [("pgd", "linf"), ("pgd", "l2"), ("apgd", "linf"), ("apgd", "l2"), ("fgsm", "linf")],
)
def test_a_model_whose_input_gradient_is_an_expanded_view(attack, norm):
    model, eps = LinearInTheSum(), 0.5 if norm == "l2" else 8 / 255
    x, y = torch.rand(5, 3, 7, 9) * 0.5 + 0.25, torch.tensor([0, 0, 2, 0, 2])
    run = {"pgd": pgd, "apgd": apgd, "fgsm": fgsm}[attack]
    x_adv = run(model, x, y, eps, **({} if attack == "fgsm" else {"steps": 4, "norm": norm}))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and (x_adv >= 0).all() and (x_adv <= 1).all()
    # the loss of class 0 rises as the pixel sum falls: the attack must lower the sum
    assert (x_adv[y == 0].sum((1, 2, 3)) < x[y == 0].sum((1, 2, 3))).all()
