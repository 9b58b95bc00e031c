"""Random starts keyed by each image's index in the evaluation set: the curve does not depend
on the batch size, on max_batch, or on how the set is split into shards whose counts are
summed (what processes sharing an evaluation do), and bisection attacks each (image, budget)
pair exactly as "all" does, so its curve is the bisection of "all"'s own outcomes."""

import dataclasses

import pytest
import torch

from fastrft.attack_registry import ATTACKS
from fastrft.evaluate import accuracy_curve, eps_grid, measure_curve
from tests.test_curve_strategies import bisect_by_hand
from tests.test_evaluate import StartProbe, batches_of

GRID = [0.0, 1 / 255, 2 / 255, 4 / 255]
STRATEGIES = ["all", "bisect"]


@pytest.fixture
def probe(trained):
    """A model whose accuracy under attack is decided by the random starts alone, and 90
    images."""
    _, x, y = trained
    return StartProbe(x[:90], y[:90]), x[:90], y[:90]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("attack", ["apgd", "pgd"])
def test_the_curve_does_not_depend_on_the_batching(probe, attack, strategy):
    model, x, y = probe

    def curve(batch, max_batch=None):
        batches = batches_of(x, y, batch)
        return accuracy_curve(
            model, batches, GRID, attack, 1, max_batch=max_batch, strategy=strategy, seed=5
        )

    whole = curve(90)
    assert 0.2 < whole[-1] < 0.8, "the probe must see the random starts"
    assert curve(7) == whole, "batches of 7"
    assert curve(90, max_batch=13) == whole, "attack calls of 13 rows"
    assert curve(1) == whole, "one image at a time"


class Kept:
    """Stands in for the other process of a two-process evaluation: the first shard's counts
    are kept, and added to the second's."""

    def __init__(self):
        self.counts = None

    def keep(self, counts):
        self.counts = counts.clone()
        return counts

    def add(self, counts):
        return counts + self.counts


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shards_whose_counts_are_summed_give_the_whole_sets_curve(probe, strategy):
    model, x, y = probe
    cut = 37

    def curve(lo, hi, **kwargs):
        batches = batches_of(x[lo:hi], y[lo:hi], 16)
        return measure_curve(model, batches, GRID, steps=1, strategy=strategy, seed=5, **kwargs)

    whole, kept = curve(0, 90), Kept()
    first = curve(0, cut, sum_across=kept.keep)
    second = curve(cut, 90, first_index=cut, sum_across=kept.add)
    assert second.accuracies == whole.accuracies
    assert (first.samples, second.samples) == (cut, 90)
    alone = curve(cut, 90, first_index=cut)
    assert second.attack_calls == first.attack_calls + alone.attack_calls
    assert second.gradient_passes == first.gradient_passes + alone.gradient_passes
    assert curve(cut, 90).accuracies != alone.accuracies, "the index must key the starts"


class Spy:
    """Wraps apgd and records each row's attack points by (id, budget in 255ths)."""

    def __init__(self):
        self.real = ATTACKS["apgd"].run()
        self.rows = {}

    def __call__(self, model, x, y, eps, **kwargs):
        x_adv = self.real(model, x, y, eps, **kwargs)
        budgets = [round(e * 255) for e in eps.tolist()]
        for i, e, point in zip(kwargs["ids"].tolist(), budgets, x_adv, strict=True):
            self.rows.setdefault((i, e), []).append(point)
        return x_adv


def test_bisection_attacks_each_pair_as_all_does_and_bisects_its_outcomes(trained, monkeypatch):
    """With random starts on: every (image, budget) that bisection attacks is attacked to
    the very point "all" reaches for it, so bisect's curve is the hand-run bisection of
    "all"'s outcomes (it differs from "all"'s own curve only where those are not monotone)."""
    model, x, y = trained
    x, y = x[:64], y[:64]
    grid = eps_grid(6 / 255)
    spies = {}
    curves = {}
    for strategy in STRATEGIES:
        spies[strategy] = spy = Spy()
        monkeypatch.setitem(ATTACKS, "apgd", dataclasses.replace(ATTACKS["apgd"], function=spy))
        batches = batches_of(x, y, 32)
        curves[strategy] = accuracy_curve(model, batches, grid, steps=3, strategy=strategy, seed=3)
    every, bisected = spies["all"].rows, spies["bisect"].rows
    attacked = [key for key in bisected if key[1] > 0]
    assert len(attacked) > 64, "bisection attacked images at budgets above 0"
    for key in attacked:
        for point in bisected[key]:
            assert torch.equal(point, every[key][0]), f"image {key[0]} at {key[1]}/255"
    with torch.no_grad():
        clean_ok = (model(x).argmax(1) == y).tolist()
        points = [torch.stack([every[(i, k)][0] for i in range(64)]) for k in range(1, 7)]
        broken = torch.stack([model(p).argmax(1) != y for p in points], 1).tolist()
    first = bisect_by_hand(broken)
    expected = [sum(clean_ok) / 64] + [
        sum(ok and f > k for ok, f in zip(clean_ok, first, strict=True)) / 64
        for k in range(len(grid) - 1)
    ]
    assert curves["bisect"] == expected
    assert curves["bisect"][-1] < 0.5 < curves["bisect"][0], "the attack must break images"


@pytest.mark.parametrize("first_index", [-1, 1.5, True])
def test_a_bad_first_index_is_named(probe, first_index):
    model, x, y = probe
    with pytest.raises(ValueError, match="first_index must be an int >= 0"):
        measure_curve(model, batches_of(x, y), GRID, first_index=first_index)
