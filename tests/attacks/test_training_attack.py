"""The trainer's attack (engine.attacker.attack_function) is the configured one: the
iterate rule (attack.best) and the random start (attack.random_start) reach it."""

import pytest
import torch

from fastrft.attacks import apgd, fgsm, pgd
from fastrft.config import load_config
from fastrft.engine.attacker import attack_function
from fastrft.objectives import make_objective

EPS = 4 / 255


def _training_attack(*overrides):
    cfg = load_config([], [f"attack.eps={EPS}", "attack.steps=5", *overrides])
    return attack_function(cfg.attack, make_objective("madry"))


@pytest.mark.parametrize("best", ["loss", "adversarial"])
def test_apgd_gets_best_and_random_start(trained, best):
    model, x, y = trained
    fn = _training_attack(f"attack.best={best}", "attack.random_start=false")
    expected = apgd(model, x, y, EPS, steps=5, random_start=False, best=best)
    rival = {"loss": "adversarial", "adversarial": "loss"}[best]
    other = apgd(model, x, y, EPS, steps=5, random_start=False, best=rival)
    got = fn(model, x, y, torch.full((len(x),), EPS))
    assert torch.equal(got, expected), f"the training attack did not use best={best}"
    assert not torch.equal(got, other), "the fixture cannot tell the two rules apart"


def test_training_apgd_returns_the_highest_loss_point_by_default(trained):
    model, x, y = trained
    fn = _training_attack("attack.random_start=false")
    expected = apgd(model, x, y, EPS, steps=5, random_start=False, best="loss")
    assert torch.equal(fn(model, x, y, EPS), expected), "training apgd is not best='loss'"


@pytest.mark.parametrize(("name", "attack"), [("pgd", pgd), ("fgsm", fgsm)])
def test_pgd_and_fgsm_get_random_start(trained, name, attack):
    model, x, y = trained
    steps = {"steps": 5} if name == "pgd" else {}
    fn = _training_attack(f"attack.name={name}", "attack.random_start=false")
    fixed = attack(model, x, y, EPS, random_start=False, **steps)
    assert torch.equal(fn(model, x, y, EPS), fixed), f"training {name} started at random"
    fn = _training_attack(f"attack.name={name}")
    torch.manual_seed(4)
    got = fn(model, x, y, EPS)
    torch.manual_seed(4)
    random = attack(model, x, y, EPS, random_start=True, **steps)
    assert torch.equal(got, random), f"training {name} did not start at random"
