"""Which point APGD returns. best="loss": the highest-loss iterate for every sample (Madry's
inner maximisation; the authors' training code), checked against a plain-torch APGD written
here from the description in apgd.py's docstring. best="adversarial": AutoAttack's rule."""

import pytest
import torch
import torch.nn.functional as F

from fastrft.attacks import APGD, apgd, apgd_checkpoints
from fastrft.toy import TinyCNN
from tests.helpers import assert_close


def plain_apgd_highest_loss(model, x, y, eps, steps, rho=0.75, momentum=0.75):
    """l_inf APGD-CE from x (no random start), returning each sample's highest-loss iterate.

    Step size 2 * eps, halved per sample at the checkpoints where the loss rose in at most
    rho of the period's steps, or where the best loss did not improve since the last check
    and the step was not halved then; a halving restarts the sample from its best point.
    Momentum: x_next = P(x + a (z - x) + (1 - a) (x - x_before)), z = P(x + step sign(g)),
    a = 1 on the first step. The last iterate is only evaluated, not differentiated.
    """

    def project(v):
        return torch.min(torch.max(v, x - eps), x + eps).clamp(0, 1)

    def ce_and_grad(v):
        v = v.clone().requires_grad_(True)
        losses = F.cross_entropy(model(v), y, reduction="none")
        return losses.detach(), torch.autograd.grad(losses.sum(), v)[0]

    per_sample = (-1, 1, 1, 1)
    cur, before = x.clone(), x.clone()
    loss, grad = ce_and_grad(cur)
    best, best_loss, best_grad = cur.clone(), loss.clone(), grad.clone()
    step = torch.full((len(x),), 2 * eps)
    rises, last_loss = torch.zeros(len(x)), loss
    best_loss_at_check, halved_at_check = best_loss.clone(), torch.ones(len(x), dtype=torch.bool)
    checks = apgd_checkpoints(steps)
    for i in range(steps):
        a = 1.0 if i == 0 else momentum
        z = project(cur + step.view(per_sample) * grad.sign())
        nxt = project(cur + a * (z - cur) + (1 - a) * (cur - before))
        before, cur = cur, nxt
        if i == steps - 1:
            with torch.no_grad():
                loss = F.cross_entropy(model(cur), y, reduction="none")
        else:
            loss, grad = ce_and_grad(cur)
        up = loss > best_loss
        best[up], best_loss[up], best_grad[up] = cur[up], loss[up], grad[up]
        rises += (loss > last_loss).float()
        last_loss = loss
        if i in checks and i < steps - 1:
            oscillated = rises <= checks[i] * rho
            stalled = ~halved_at_check & (best_loss_at_check >= best_loss)
            halve = oscillated | stalled
            step[halve] /= 2
            cur[halve], grad[halve] = best[halve], best_grad[halve]
            halved_at_check, best_loss_at_check = halve, best_loss.clone()
            rises.zero_()
    return best


def _ce(model, v, y):
    with torch.no_grad():
        return F.cross_entropy(model(v), y, reduction="none")


@pytest.mark.parametrize("steps", [3, 7, 10])
def test_highest_loss_iterate_matches_plain_reference(trained, steps):
    model, x, y = trained
    x, y = x[:200], y[:200]
    torch.manual_seed(5)
    ours = apgd(model, x, y, 4 / 255, steps=steps, random_start=False, best="loss")
    torch.manual_seed(5)
    ref = plain_apgd_highest_loss(model, x, y, 4 / 255, steps)
    assert_close(ours, ref, atol=1e-6, what=f"APGD-{steps} best='loss'")


@pytest.mark.parametrize("shape", [(5, 3, 13, 11), (1, 3, 7, 9), (4, 1, 17, 5)])
def test_highest_loss_iterate_on_fresh_inputs_odd_sizes(shape):
    model = TinyCNN(classes=7, channels=shape[1], width=6).eval()
    x, y = torch.rand(shape), torch.randint(0, 7, (shape[0],))
    ours = apgd(model, x, y, 8 / 255, steps=5, random_start=False, best="loss")
    ref = plain_apgd_highest_loss(model, x, y, 8 / 255, 5)
    assert_close(ours, ref, atol=1e-6, what=f"APGD best='loss' on {shape}")


def test_loss_rule_never_returns_a_lower_loss_than_the_adversarial_rule(trained):
    """Same run, two rules: per sample the loss at the "loss" point is the highest seen, so at
    least the loss at the "adversarial" point; where nothing was fooled the two agree."""
    model, x, y = trained
    by_loss = apgd(model, x, y, 4 / 255, steps=7, random_start=False, best="loss")
    by_adv = apgd(model, x, y, 4 / 255, steps=7, random_start=False, best="adversarial")
    assert (_ce(model, by_loss, y) >= _ce(model, by_adv, y) - 1e-6).all()
    fooled = (model(by_adv).argmax(1) != y).detach()
    assert torch.equal(by_loss[~fooled], by_adv[~fooled])
    assert fooled.any() and not torch.equal(by_loss[fooled], by_adv[fooled]), (
        "the fixture should have fooled samples whose last fooling point is not the best-loss one"
    )


def test_restarts_keep_the_higher_loss(trained):
    model, x, y = trained
    x, y = x[:128], y[:128]
    torch.manual_seed(2)
    one = apgd(model, x, y, 4 / 255, steps=4, best="loss")
    torch.manual_seed(2)
    three = apgd(model, x, y, 4 / 255, steps=4, restarts=3, best="loss")
    assert (_ce(model, three, y) >= _ce(model, one, y)).all(), "a restart lowered a sample's loss"


def test_default_is_autoattacks_rule(trained):
    """Library users evaluating with apgd() get AutoAttack's rule unless they ask otherwise."""
    model, x, y = trained
    default = apgd(model, x, y, 4 / 255, steps=5, random_start=False)
    adversarial = apgd(model, x, y, 4 / 255, steps=5, random_start=False, best="adversarial")
    assert torch.equal(default, adversarial)


def test_object_passes_best_through(trained):
    model, x, y = trained
    attack = APGD(model, eps=4 / 255, steps=5, best="loss", random_start=False)
    expected = apgd(model, x, y, 4 / 255, steps=5, random_start=False, best="loss")
    assert torch.equal(attack(x, y), expected)


def test_bad_best_is_named():
    model = TinyCNN(classes=3, width=2)
    x, y = torch.rand(2, 3, 5, 5), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"best must be 'loss' .* or 'adversarial'"):
        apgd(model, x, y, 0.1, best="first")
