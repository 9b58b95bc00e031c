"""The attacks are attacks: on a small standard-trained CNN they behave as the literature says,
and PGD agrees with an independent plain-torch PGD written here."""

import pytest
import torch
import torch.nn.functional as F

from fastrft.attacks import apgd, fgsm, pgd
from fastrft.toy import accuracy

EPS = 4 / 255


def plain_pgd(model, x, y, eps, alpha, steps):
    """The loop people write by hand (torchattacks style), as an independent yardstick."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv


def test_robust_accuracy_falls_as_eps_grows(trained):
    model, x, y = trained
    clean = accuracy(model, x, y)
    accs = [accuracy(model, pgd(model, x, y, e / 255, steps=10), y) for e in (1, 2, 4, 8)]
    assert clean > 0.9, f"the fixture model should be accurate, got {clean:.3f}"
    assert all(a > b for a, b in zip([clean, *accs], accs, strict=False)), accs
    assert accs[-1] < 0.3, f"PGD-10 at 8/255 should break a non-robust model, got {accs}"


def test_pgd_matches_independent_plain_pgd(trained):
    model, x, y = trained
    ours = accuracy(model, pgd(model, x, y, EPS, alpha=EPS / 4, steps=10), y)
    theirs = accuracy(model, plain_pgd(model, x, y, EPS, EPS / 4, 10), y)
    assert abs(ours - theirs) <= 0.02, f"fastrft PGD {ours:.3f} vs plain PGD {theirs:.3f}"


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_at_least_as_strong_as_pgd(trained, loss):
    model, x, y = trained
    acc_pgd = accuracy(model, pgd(model, x, y, EPS, alpha=EPS / 4, steps=10), y)
    acc_apgd = accuracy(model, apgd(model, x, y, EPS, steps=10, loss=loss), y)
    assert acc_apgd <= acc_pgd + 0.01, f"APGD-{loss} {acc_apgd:.3f} vs PGD-10 {acc_pgd:.3f}"


def test_fgsm_weaker_than_pgd_but_an_attack(trained):
    model, x, y = trained
    clean = accuracy(model, x, y)
    acc_fgsm = accuracy(model, fgsm(model, x, y, EPS), y)
    acc_pgd = accuracy(model, pgd(model, x, y, EPS, steps=10), y)
    assert acc_pgd <= acc_fgsm < clean - 0.05, (clean, acc_fgsm, acc_pgd)


def test_l2_attacks_reduce_accuracy(trained):
    model, x, y = trained
    clean = accuracy(model, x, y)
    acc_pgd = accuracy(model, pgd(model, x, y, 0.5, alpha=0.1, steps=10, norm="l2"), y)
    acc_apgd = accuracy(model, apgd(model, x, y, 0.5, steps=10, norm="l2"), y)
    assert acc_apgd <= acc_pgd + 0.01 and acc_pgd < clean - 0.1, (clean, acc_pgd, acc_apgd)


def test_targeted_pgd_reaches_its_targets(trained):
    model, x, y = trained
    target = (y + 1) % 10
    x_adv = pgd(model, x, target, 16 / 255, steps=20, targeted=True)
    hit = (model(x_adv).argmax(1) == target).float().mean().item()
    assert hit > 0.5, f"only {hit:.3f} of samples reached their target class"


def test_bf16_attack_within_one_point_of_fp32(trained):
    model, x, y = trained
    torch.manual_seed(1)
    fp32 = accuracy(model, apgd(model, x, y, EPS, steps=10), y)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = apgd(model, x, y, EPS, steps=10)
    bf16 = accuracy(model, x_adv, y)  # judged in fp32
    assert abs(bf16 - fp32) <= 0.01, f"bf16 attack {bf16:.3f} vs fp32 attack {fp32:.3f}"


def test_apgd_output_is_never_worse_than_its_start(trained):
    """A sample the attack reports as fooled stays fooled: the returned point is one where the
    model erred, so accuracy on APGD's output is at most that on any single iterate."""
    model, x, y = trained
    torch.manual_seed(3)
    out = apgd(model, x, y, EPS, steps=1, random_start=True)
    torch.manual_seed(3)
    last_only = pgd(model, x, y, EPS, alpha=2 * EPS, steps=1)
    assert accuracy(model, out, y) <= accuracy(model, last_only, y)
