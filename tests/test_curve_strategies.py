"""The accuracy-vs-eps curve by bisection against attacking every budget: exactly the same
curve where the attack's success grows with eps (a model and attack built so), the same as
bisecting "all"'s own per-budget outcomes on a trained CNN, and the invariants: monotone, never
above clean accuracy, one static batch shape per round, clean-misclassified images never
attacked, the pass count of the formula."""

import dataclasses
import itertools
import math

import pytest
import torch
from torch import nn

from fastrft.attack_registry import ATTACKS
from fastrft.attacks import apgd
from fastrft.config import ConfigError, load_config
from fastrft.evaluate import accuracy_curve, clean_accuracy, eps_grid, measure_curve
from tests.test_evaluate import EXACT, WrongOnClean, batches_of, every_other

CLASSES = 10


class Threshold(nn.Module):
    """Right at a point within l_inf distance ``radius[i]`` of image i (the nearest of ``x``),
    wrong beyond it; wrong everywhere around the images where ``wrong`` is set. Under
    :class:`Shift`, image i is broken at eps exactly when eps >= radius[i]."""

    def __init__(self, x, y, radius, wrong):
        super().__init__()
        for name, t in (("x", x.flatten(1)), ("y", y), ("radius", radius), ("wrong", wrong)):
            self.register_buffer(name, t)
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        flat = x.flatten(1).float()
        nearest = torch.cdist(flat, self.x).argmin(1)
        dist = (flat - self.x[nearest]).abs().amax(1)
        right = (dist < self.radius[nearest]) & ~self.wrong[nearest]
        label = torch.where(right, self.y[nearest], (self.y[nearest] + 1) % CLASSES)
        return 10 * nn.functional.one_hot(label, CLASSES).float() + (x * self.w).sum()


class Shift:
    """Stands in for apgd: moves every pixel up by the image's eps (monotone by construction),
    and records each call's batch size and budgets."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, x, y, eps, **kwargs):
        self.calls.append(eps.clone())
        return x + eps.view(-1, 1, 1, 1)


def threshold_case(n, seed=0):
    """Images in [0.25, 0.75] (a shift of 16/255 stays in [0, 1]), radii halfway between
    budgets of 1/255 from below the first to beyond 16/255, every third image wrong."""
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(n, 3, 4, 4, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    radius = (torch.randint(0, 18, (n,), generator=g) + 0.5) / 255
    wrong = torch.arange(n) % 3 == 0
    return Threshold(x, y, radius, wrong), x, y, radius, wrong


def reference_curve(grid, radius, wrong):
    """By hand: correct at eps when right on x and eps is within the radius."""
    n = len(radius)
    return [sum(bool(~w & (e < r)) for r, w in zip(radius, wrong, strict=True)) / n for e in grid]


@pytest.fixture
def shift(monkeypatch):
    shift = Shift()
    monkeypatch.setitem(ATTACKS, "apgd", dataclasses.replace(ATTACKS["apgd"], function=shift))
    return shift


GRIDS = {
    "one": [0.0],
    "two": [0.0, 5 / 255],
    "seventeen": eps_grid(16 / 255),
    "unsorted with a repeat": [9 / 255, 0.0, 2 / 255, 9 / 255, 1 / 255, 17 / 255],
}


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("n, batch", [(30, 7), (17, 17), (5, 1)])
@pytest.mark.parametrize("strategy", ["all", "bisect"])
def test_monotone_attack_gives_the_reference_curve(shift, grid, n, batch, strategy):
    model, x, y, radius, wrong = threshold_case(n)
    curve = accuracy_curve(model, batches_of(x, y, batch), grid, strategy=strategy)
    assert curve == reference_curve(grid, radius, wrong)


@pytest.mark.parametrize("budgets", [1, 2, 3, 16])
def test_bisection_rounds_are_static_and_counted(shift, budgets):
    """ceil(log2(G + 1)) calls per batch, each of the whole batch (a short last one too) with
    per-image budgets; misclassified images at eps 0 in every call; passes = calls * steps."""
    model, x, y, _, wrong = threshold_case(30)
    grid = eps_grid(budgets / 255)
    measured = measure_curve(model, batches_of(x, y, 8), grid, steps=3, strategy="bisect")
    rounds = math.ceil(math.log2(budgets + 1))
    assert [len(e) for e in shift.calls] == [8] * rounds * 3 + [6] * rounds
    assert measured.attack_calls == 4 * rounds and measured.gradient_passes == 4 * rounds * 3
    per_image = torch.stack(shift.calls[: rounds * 3]).view(3, rounds, 8).transpose(0, 1)
    per_image = torch.cat([per_image.reshape(rounds, 24), torch.stack(shift.calls[-rounds:])], 1)
    assert (per_image[:, wrong] == 0).all(), "misclassified clean: never attacked"
    assert (per_image[0, ~wrong] > 0).all(), "every other image attacked in the first round"


def test_all_counts_an_attack_per_budget(shift):
    model, x, y, _, _ = threshold_case(30)
    measured = measure_curve(model, batches_of(x, y, 8), eps_grid(16 / 255), steps=3)
    assert measured.strategy == "all"
    assert measured.attack_calls == 4 * 16 and measured.gradient_passes == 4 * 16 * 3


def bisect_by_hand(broken):
    """The smallest broken budget per image (a list of G outcomes each; G: never), by the
    bisection the curve runs, written out as a loop."""
    first = []
    for outcomes in broken:
        lo, hi = 0, len(outcomes)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if outcomes[mid] else (mid + 1, hi)
        first.append(lo)
    return first


def test_bisect_on_a_trained_cnn_bisects_the_attacks_own_outcomes(trained):
    """A deterministic APGD on a real model: bisection reads the same outcomes "all" reads (one
    attack of the batch per budget), so its curve is the hand-run bisection of them, and
    "all"'s is their per-budget count; the two differ only where an image's outcomes are not
    monotone in eps."""
    model, x, y = trained
    x, y = x[:64], y[:64]
    grid = eps_grid(8 / 255)
    with torch.no_grad():
        clean_ok = (model(x).argmax(1) == y).tolist()
    broken = []
    for eps in grid[1:]:
        x_adv = apgd(model, x, y, eps, steps=4, **EXACT)
        with torch.no_grad():
            broken.append((model(x_adv).argmax(1) != y).tolist())
    broken = list(zip(*broken, strict=True))  # per image, per budget
    first = bisect_by_hand(broken)
    n = len(y)
    expected_bisect = [sum(clean_ok) / n] + [
        sum(ok and f > k for ok, f in zip(clean_ok, first, strict=True)) / n
        for k in range(len(grid) - 1)
    ]
    expected_all = [sum(clean_ok) / n] + [
        sum(ok and not b[k] for ok, b in zip(clean_ok, broken, strict=True)) / n
        for k in range(len(grid) - 1)
    ]
    batches = [(x, y)]
    kwargs = dict(steps=4, attack_kwargs=EXACT)
    assert accuracy_curve(model, batches, grid, strategy="bisect", **kwargs) == expected_bisect
    assert accuracy_curve(model, batches, grid, strategy="all", **kwargs) == expected_all
    assert expected_bisect[-1] < 0.5 < expected_bisect[0], "the attack must break images"


@pytest.mark.parametrize("attack", ["apgd", "pgd"])
def test_bisected_curve_is_monotone_and_never_above_clean(trained, attack):
    model, x, y = trained
    batches = batches_of(x[:45], y[:45], 13)
    grid = eps_grid(6 / 255)
    curve = accuracy_curve(model, batches, grid, attack, steps=3, strategy="bisect", seed=0)
    assert curve[0] == clean_accuracy(model, batches)
    assert all(b <= a for a, b in itertools.pairwise(curve)), curve
    again = accuracy_curve(model, batches, grid, attack, steps=3, strategy="bisect", seed=0)
    assert again == curve, "seeded: the same curve"


def test_bisect_counts_robust_only_if_correct_on_clean_too(trained):
    _, x, y = trained
    x, y = x[:48], y[:48]
    model = WrongOnClean(x, y, every_other(len(y)))
    curve = accuracy_curve(
        model, batches_of(x, y, 16), eps_grid(4 / 255), steps=2, seed=0, strategy="bisect"
    )
    assert curve == [0.5] * 5


def test_unknown_strategy_is_refused(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="strategy must be 'all' or 'bisect', got 'half'"):
        accuracy_curve(model, batches_of(x[:8], y[:8]), [0.0, 1 / 255], strategy="half")
    with pytest.raises(ConfigError, match=r"eval\.strategy"):
        load_config([], ["eval.strategy=half"])
    assert load_config([], ["eval.strategy=bisect"]).eval.strategy == "bisect"
