"""The attack registry is the one table of attacks by name: each entry's defaults, and that
config validation, the command lines' choices, the training attack and evaluation all read
it (an attack registered here becomes valid in each of them)."""

import subprocess
import sys

import pytest
import torch

from fastrft import attack_registry as registry
from fastrft.attack_registry import ATTACKS, AttackSpec, canonical_norm, pgd_step_size
from fastrft.attacks import apgd, fgsm, pgd
from fastrft.bench.config import load_bench_config
from fastrft.cli import main
from fastrft.config import ConfigError, load_config
from fastrft.engine.attacker import attack_function
from fastrft.evaluate import accuracy_curve, autoattack_accuracy
from fastrft.objectives import make_objective

EPS = 8 / 255


def test_each_name_runs_its_function():
    assert [ATTACKS[n].run() for n in ("apgd", "pgd", "fgsm")] == [apgd, pgd, fgsm]
    assert ATTACKS["autoattack"].run() is autoattack_accuracy


def test_roles():
    assert registry.names("training") == ("apgd", "pgd", "fgsm")
    assert registry.names("evaluation") == ("apgd", "pgd")
    assert registry.names("checkpoint") == ("apgd", "pgd", "autoattack")
    assert registry.DEFAULT == "apgd"
    assert registry.whole_set("autoattack") and not registry.whole_set("apgd")
    assert not registry.whole_set(None) and not registry.whole_set("cw")


@pytest.mark.parametrize(
    ("name", "random_start", "expected"),
    [("pgd", True, 2.5 * EPS / 4), ("fgsm", True, 1.25 * EPS), ("fgsm", False, EPS)],
)
def test_default_step_sizes(name, random_start, expected):
    spec = ATTACKS[name]
    assert spec.alpha(EPS, 4, random_start) == pytest.approx(expected)
    assert spec.alpha(EPS, 4, random_start, alpha=0.01) == 0.01, "a given alpha wins"


def test_apgd_sets_its_own_step_size():
    assert ATTACKS["apgd"].alpha(EPS, 4, True) is None
    assert "halved" in ATTACKS["apgd"].own_step_size


@pytest.mark.parametrize(
    ("name", "norms", "passes", "best", "trades"),
    [
        ("apgd", ("linf", "l2"), (5, 1), True, False),
        ("pgd", ("linf", "l2"), (5, 0), False, True),
        ("fgsm", ("linf",), (1, 0), False, False),
    ],
)
def test_entries(name, norms, passes, best, trades):
    spec = ATTACKS[name]
    assert (spec.norms, spec.passes(5), spec.chooses_best, spec.trades) == (
        norms,
        passes,
        best,
        trades,
    )


def test_settings_are_those_the_attack_takes():
    given = dict(norm="linf", steps=3, alpha=0.01, best="loss")
    assert ATTACKS["apgd"].settings(**given) == dict(norm="linf", steps=3, best="loss")
    assert ATTACKS["pgd"].settings(**given) == dict(norm="linf", steps=3, alpha=0.01)
    assert ATTACKS["fgsm"].settings(**given) == dict(norm="linf", alpha=0.01)
    assert ATTACKS["pgd"].settings(norm="l2") == dict(norm="l2"), "None: the default"


def test_norms_are_checked_here():
    assert [canonical_norm(n) for n in ("linf", "Linf", "inf", "L2")] == [
        "linf",
        "linf",
        "linf",
        "l2",
    ]
    with pytest.raises(ValueError, match="norm must be 'linf' or 'l2'"):
        canonical_norm("l1")
    assert ATTACKS["fgsm"].check_norm("l2").startswith("fgsm is an l_inf attack")
    assert ATTACKS["pgd"].check_norm("l2") is None


def test_imports_without_torch():
    code = "import sys, fastrft.attack_registry; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def fake(model, x, y, eps, **settings):
    fake.calls.append(settings)
    return x


@pytest.fixture
def registered(monkeypatch):
    """A fake attack, registered for training and evaluation."""
    fake.calls = []
    spec = AttackSpec("fake", fake, "a test's attack", step_size=pgd_step_size)
    monkeypatch.setitem(ATTACKS, "fake", spec)
    return spec


def test_unregistered_name_is_refused_with_the_registrys_choices():
    with pytest.raises(ConfigError, match=r"attack\.name: must be apgd, pgd or fgsm, got 'fake'"):
        load_config([], ["attack.name=fake"])
    with pytest.raises(ConfigError, match=r"eval\.attack: must be apgd or pgd, got 'fake'"):
        load_config([], ["eval.attack=fake"])


def test_registered_attack_is_valid_in_config(registered):
    cfg = load_config([], ["attack.name=fake", "eval.attack=fake", "attack.alpha=0.01"])
    assert (cfg.attack.name, cfg.eval.attack) == ("fake", "fake")


def test_registered_attack_is_a_choice_of_the_command_lines(registered, capsys):
    assert load_bench_config("tiny", ["attack.name=fake"]).attack.name == "fake"
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "fake (a test's attack)" in capsys.readouterr().out


def test_registered_attack_trains_and_evaluates(registered, trained):
    model, x, y = trained
    cfg = load_config([], ["attack.name=fake", "attack.steps=3", "attack.alpha=0.01"])
    attack_function(cfg.attack, make_objective("madry"))(model, x, y, torch.full((len(x),), EPS))
    assert fake.calls[-1] == dict(
        norm="linf", steps=3, alpha=0.01, loss="ce", random_start=True, validate=False
    )
    curve = accuracy_curve(model, [(x, y)], [0.0, EPS], attack="fake", steps=2)
    keys = {k: fake.calls[-1].pop(k) for k in ("seed", "ids")}  # the random starts' keys
    assert fake.calls[-1] == dict(norm="linf", steps=2)
    assert torch.equal(keys["ids"], torch.arange(len(x))), "each image keyed by its index"
    assert keys["seed"].dtype == torch.int64 and keys["seed"].shape == (1,)
    assert curve[0] == curve[1], "the fake attack leaves x as it is"
