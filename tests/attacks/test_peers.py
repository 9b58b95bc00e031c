"""fastrft's attacks against the peers people compare with: AutoAttack's own APGD-CE, and
torchattacks, whose classes fastrft's objects replace by a change of import."""

import inspect

import pytest
import torch

from fastrft import attacks
from fastrft.attacks import apgd
from fastrft.toy import TinyCNN, accuracy
from tests.helpers import assert_close

DROP_IN = ["FGSM", "FFGSM", "PGD", "PGDL2", "APGD"]


@pytest.mark.parametrize("eps", [2 / 255, 4 / 255])
def test_apgd_matches_autoattacks_apgd_ce(trained, eps):
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    model, x, y = trained
    theirs_attack = autopgd.APGDAttack(
        model, n_iter=10, norm="Linf", eps=eps, loss="ce", seed=0, device=torch.device("cpu")
    )
    theirs = accuracy(model, theirs_attack.perturb(x, y), y)
    ours = accuracy(model, apgd(model, x, y, eps, steps=10), y)
    # AutoAttack returns clean images for samples it never fooled: accuracies compare
    assert abs(ours - theirs) <= 0.02, f"fastrft APGD-CE {ours:.3f}, AutoAttack's {theirs:.3f}"


@pytest.fixture(scope="module")
def ta():
    return pytest.importorskip("torchattacks")


def _defaults(cls):
    """{argument: default} of a constructor, the model left out."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return {p.name: p.default for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}


@pytest.mark.parametrize("name", DROP_IN)
def test_same_arguments_and_defaults_as_torchattacks(name, ta):
    """Every argument torchattacks' class takes is accepted, with the same default, and the
    object runs when a script passes all of them."""
    theirs, ours = _defaults(getattr(ta, name)), _defaults(getattr(attacks, name))
    missing = {k: v for k, v in theirs.items() if k not in ours}
    assert not missing, f"fastrft's {name} lacks torchattacks' arguments {missing}"
    differ = {k: (ours[k], v) for k, v in theirs.items() if ours[k] != v}
    assert not differ, f"{name} defaults (fastrft, torchattacks) differ: {differ}"
    model = TinyCNN(classes=5, width=4).eval()
    x, y = torch.rand(2, 3, 9, 7), torch.randint(0, 5, (2,))
    x_adv = getattr(attacks, name)(model, **theirs)(x, y)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1


def _inputs(request, shape):
    """The trained fixture, or an untrained CNN on fresh random inputs of an odd size."""
    if shape is None:
        return request.getfixturevalue("trained")
    model = TinyCNN(classes=7, channels=shape[1], width=6).eval()
    return model, torch.rand(shape), torch.randint(0, 7, (shape[0],))


SHAPES = [None, (5, 3, 13, 11), (1, 1, 7, 9)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("name", "kwargs", "atol"),
    [
        ("FGSM", {}, 1e-6),
        ("FGSM", {"eps": 3 / 255}, 1e-6),
        ("PGD", {"random_start": False}, 1e-6),
        ("PGD", {"eps": 4 / 255, "alpha": 1 / 255, "steps": 5, "random_start": False}, 1e-6),
    ],
)
def test_deterministic_attacks_equal_torchattacks(request, shape, name, kwargs, atol, ta):
    model, x, y = _inputs(request, shape)
    theirs = getattr(ta, name)(model, **kwargs)(x, y)
    ours = getattr(attacks, name)(model, **kwargs)(x, y)
    assert_close(ours, theirs, atol=atol, what=f"{name}({kwargs}) against torchattacks")


@pytest.mark.parametrize("shape", SHAPES)
def test_pgdl2_equals_torchattacks_where_the_gradient_does_not_vanish(request, shape, ta):
    """torchattacks divides the batch-mean gradient by its norm + 1e-10: a sample the model
    is very sure of (gradient norm near 1e-10 x batch size) takes a shorter step there. Every
    other sample follows the same path: on the trained model, all but a few in a hundred."""
    model, x, y = _inputs(request, shape)
    kwargs = {"eps": 0.5, "alpha": 0.1, "steps": 4, "random_start": False}
    theirs = ta.PGDL2(model, **kwargs)(x, y)
    ours = attacks.PGDL2(model, **kwargs)(x, y)
    worst = (ours - theirs).flatten(1).abs().amax(1)
    agree = (worst <= 1e-5).float().mean().item()
    assert agree >= (0.99 if shape is None else 1.0), f"{agree:.1%} of samples agree"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("FFGSM", {}), ("FFGSM", {"eps": 4 / 255, "alpha": 5 / 255}), ("PGD", {"steps": 3})],
)
def test_random_start_attacks_equal_torchattacks_on_same_draws(request, shape, name, kwargs, ta):
    """Same seed, same uniform draws: torchattacks' FFGSM first draws (and discards) a normal
    tensor of the image's shape, ``torch.randn_like(images).uniform_(-eps, eps)``, which is
    replayed here before fastrft's call. The starts then differ in rounding only."""
    model, x, y = _inputs(request, shape)
    torch.manual_seed(9)
    theirs = getattr(ta, name)(model, **kwargs)(x, y)
    torch.manual_seed(9)
    if name == "FFGSM":
        torch.randn_like(x)
    ours = getattr(attacks, name)(model, **kwargs)(x, y)
    assert_close(ours, theirs, atol=1e-5, what=f"{name}({kwargs}) against torchattacks")


def test_apgd_object_as_strong_as_torchattacks_apgd(trained, ta):
    """Different random starts and a different point for samples never fooled (see the
    README's table): the robust accuracies compare, the outputs do not."""
    model, x, y = trained
    theirs = accuracy(model, ta.APGD(model, eps=4 / 255, steps=10)(x, y), y)
    ours = accuracy(model, attacks.APGD(model, eps=4 / 255, steps=10)(x, y), y)
    assert abs(ours - theirs) <= 0.02, f"fastrft APGD {ours:.3f}, torchattacks' {theirs:.3f}"


def test_apgd_object_is_seeded_per_call_like_torchattacks(trained):
    """torchattacks' APGD reseeds with ``seed`` on every call (same images, same result);
    fastrft's does too, without moving the caller's generator."""
    model, x, y = trained
    attack = attacks.APGD(model, eps=4 / 255, steps=3, seed=3)
    state = torch.get_rng_state()
    first, second = attack(x, y), attack(x, y)
    assert torch.equal(torch.get_rng_state(), state), "the caller's generator moved"
    assert torch.equal(first, second), "two calls on the same images differ"
    torch.manual_seed(3)
    assert torch.equal(first, apgd(model, x, y, 4 / 255, steps=3))
    other = attacks.APGD(model, eps=4 / 255, steps=3, seed=4)(x, y)
    assert not torch.equal(first, other), "the seed changed nothing"


def test_apgd_object_refuses_expectation_over_transformation():
    model = TinyCNN(classes=5, width=4)
    with pytest.raises(ValueError, match="eot_iter"):
        attacks.APGD(model, eot_iter=4)
