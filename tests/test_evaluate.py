"""The paper's evaluation: E.adv by the trapezoidal rule, and the batched accuracy curve
against one attack per budget on a small trained CNN."""

import dataclasses
import itertools
import math
import random
import sys
import types

import pytest
import torch
from torch import nn

from fastrft.attack_registry import ATTACKS
from fastrft.attacks import apgd
from fastrft.evaluate import (
    accuracy_curve,
    autoattack_accuracy,
    clean_accuracy,
    delay_time,
    eps_grid,
    expected_robustness,
    robust_accuracy,
)
from fastrft.toy import TinyCNN, accuracy, toy_images, train_toy

# deterministic attacks (no random start), on the torch references
EXACT = {"random_start": False, "backend": "torch"}
GRID = eps_grid(8 / 255)


@pytest.fixture(scope="session")
def trained():
    """A small standard-trained (non-robust) CNN and 256 held-out images (~98% clean)."""
    torch.manual_seed(0)
    x, y = toy_images(1536 + 256, seed=0)
    model = train_toy(TinyCNN(), x[:1536], y[:1536], epochs=6)
    model.zero_grad(set_to_none=True)  # so tests can see that evaluation leaves no .grad
    return model, x[1536:], y[1536:]


def batches_of(x, y, size=64):
    return list(zip(x.split(size), y.split(size), strict=True))


@pytest.fixture(scope="session")
def curve(trained):
    model, x, y = trained
    return accuracy_curve(model, batches_of(x, y), GRID, attack_kwargs=EXACT)


# ---- eps_grid


def test_eps_grid_is_the_papers():
    assert eps_grid(8 / 255) == [k / 255 for k in range(9)], "exact k/255, 9 points"
    assert eps_grid(4 / 255) == [k / 255 for k in range(5)]
    assert eps_grid(8 / 255, 2 / 255) == [k / 255 for k in (0, 2, 4, 6, 8)]
    assert eps_grid(0.0) == [0.0]
    assert eps_grid(0.3, 0.1) == [0.0, 0.1, 0.2, 0.3], "not 0.30000000000000004"


@pytest.mark.parametrize(
    "args, match",
    [
        ((8.5 / 255,), "eps_max .* must be a whole number of steps"),
        ((-1 / 255,), "eps_max must be a finite number >= 0"),
        ((8 / 255, 0.0), "step must be a finite number > 0"),
        ((8 / 255, -1 / 255), "step must be a finite number > 0"),
    ],
)
def test_eps_grid_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        eps_grid(*args)


# ---- expected_robustness


def test_constant_curve_gives_the_constant():
    assert expected_robustness(GRID, [0.7] * 9) == pytest.approx(0.7)


@pytest.mark.parametrize("grid", [GRID, [0.0, 0.1, 0.15, 0.4, 1.0]], ids=["even", "uneven"])
def test_linear_curve_gives_the_midpoint(grid):
    a, b = 0.9, 0.1
    acc = [a + (b - a) * e / grid[-1] for e in grid]
    assert expected_robustness(grid, acc) == pytest.approx((a + b) / 2)


def test_uneven_grid_by_hand():
    # trapezoids 0.1 * (1 + 0.5) / 2 + 0.3 * (0.5 + 0.2) / 2 = 0.075 + 0.105, over eps_g 0.4
    assert expected_robustness([0.0, 0.1, 0.4], [1.0, 0.5, 0.2]) == pytest.approx(0.45)


def test_one_point_grid_is_clean_accuracy():
    assert expected_robustness([0.0], [0.83]) == 0.83


def test_e_adv_lies_between_adv_and_clean_for_non_increasing_curves():
    rng = random.Random(0)
    for _ in range(200):
        acc = sorted((rng.random() for _ in GRID), reverse=True)
        e_adv = expected_robustness(GRID, acc)
        assert acc[-1] <= e_adv <= acc[0], (acc, e_adv)


@pytest.mark.parametrize(
    "grid, acc, match",
    [
        ([0.0, 0.1], [0.9], "accuracies has 1 values but eps_grid has 2 points"),
        ([0.1, 0.2], [0.9, 0.8], "eps_grid must start at 0"),
        ([0.0, 0.2, 0.1], [0.9, 0.8, 0.7], "eps_grid must increase strictly"),
        ([0.0, 0.1, 0.1], [0.9, 0.8, 0.7], "eps_grid must increase strictly"),
        ([], [], "eps_grid is empty"),
        ([0.0, 0.1], [0.9, float("nan")], "accuracies must be finite"),
    ],
)
def test_expected_robustness_rejects_bad_input(grid, acc, match):
    with pytest.raises(ValueError, match=match):
        expected_robustness(grid, acc)


# ---- delay_time


@pytest.mark.parametrize(
    "curve, threshold, expected",
    [
        ([0.01, 0.02, 0.04, 0.05, 0.06, 0.30], 0.05, 4),  # 0.05 does not exceed 5%
        ([0.50, 0.60], 0.05, 0),
        ([0.01, 0.01, 0.02], 0.05, None),
        ([], 0.05, None),
        ([0.10, 0.20, 0.40, 0.60], 0.3, 2),
    ],
)
def test_delay_time(curve, threshold, expected):
    assert delay_time(curve, threshold) == expected


# ---- clean and robust accuracy


class ModeSpy(nn.Module):
    """Wraps a model and records, at every forward, whether any of its modules was training."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training_seen = []

    def forward(self, x):
        self.training_seen.append(any(m.training for m in self.model.modules()))
        return self.model(x)


@pytest.fixture
def spy(trained):
    """The trained model in a mixed mode (train, one BatchNorm in eval), behind a ModeSpy;
    put back in eval mode afterwards, for the other tests."""
    spy = ModeSpy(trained[0])
    spy.train()
    spy.model.features[1].eval()
    yield spy
    spy.eval()


def assert_untouched(spy: ModeSpy, stats: list[torch.Tensor]) -> None:
    """Evaluated in eval mode; modes, requires_grad, grads and BatchNorm statistics as found."""
    assert spy.training_seen and not any(spy.training_seen), "forwards ran in eval mode"
    modes = [m.training for m in spy.model.modules()]
    assert all(modes[:3]) and not modes[3] and all(modes[4:]), f"modes as found: {modes}"
    assert all(p.requires_grad and p.grad is None for p in spy.parameters()), "no .grad kept"
    after = [b.clone() for b in spy.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(stats, after, strict=True)), "BN stats moved"


def test_clean_accuracy_in_eval_mode_restores_the_model(trained, spy):
    _, x, y = trained
    stats = [b.clone() for b in spy.buffers()]
    acc = clean_accuracy(spy, batches_of(x, y, 50))
    assert_untouched(spy, stats)
    spy.eval()
    assert acc == accuracy(spy, x, y), "eval-mode accuracy over all batches"
    assert acc > 0.8


def test_robust_accuracy_matches_a_hand_written_attack(trained):
    model, x, y = trained
    x_adv = apgd(model, x, y, 4 / 255, steps=10, **EXACT)
    with torch.no_grad():
        robust = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)
    expected = robust.double().mean().item()
    assert robust_accuracy(model, batches_of(x, y), 4 / 255, attack_kwargs=EXACT) == expected
    assert expected < accuracy(model, x, y) - 0.2, "the toy model is not robust"


def test_robust_accuracy_at_zero_is_clean(trained):
    model, x, y = trained
    assert robust_accuracy(model, batches_of(x, y), 0.0) == clean_accuracy(model, [(x, y)])


# ---- accuracy_curve


def test_curve_equals_one_attack_per_budget(trained, curve):
    model, x, y = trained
    looped = [robust_accuracy(model, batches_of(x, y), e, attack_kwargs=EXACT) for e in GRID]
    assert curve == looped


def test_curve_starts_clean_and_falls(trained, curve):
    model, x, y = trained
    assert curve[0] == clean_accuracy(model, batches_of(x, y))
    assert all(b <= a + 2 / len(y) for a, b in itertools.pairwise(curve)), curve
    assert curve[-1] < 0.3, f"8/255 breaks a non-robust model, got {curve}"
    assert curve[-1] < expected_robustness(GRID, curve) < curve[0]


def test_curve_in_chunks_is_the_same(trained, curve):
    model, x, y = trained
    chunked = accuracy_curve(model, batches_of(x, y), GRID, max_batch=100, attack_kwargs=EXACT)
    assert chunked == curve


def test_curve_with_pgd_matches_one_pgd_per_budget(trained):
    model, x, y = trained
    grid = [0.0, 2 / 255, 6 / 255]
    batches = batches_of(x[:128], y[:128])
    curve = accuracy_curve(model, batches, grid, attack="pgd", steps=5, attack_kwargs=EXACT)
    looped = [
        robust_accuracy(model, batches, e, attack="pgd", steps=5, attack_kwargs=EXACT) for e in grid
    ]
    assert curve == looped and curve[2] < curve[1] < curve[0]


class CountingAttack:
    """Stands in for apgd and records each call's batch size and budgets."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, x, y, eps, **kwargs):
        self.calls.append((len(x), eps.clone()))
        return x


@pytest.mark.parametrize(
    "max_batch, sizes",
    [(None, [8, 8, 8] * 3), (24, [24, 24, 24]), (10, [10, 10, 4] * 3), (8, [8, 8, 8] * 3)],
)
def test_curve_attacks_each_batch_once_with_per_copy_budgets(
    trained, monkeypatch, max_batch, sizes
):
    model, x, y = trained
    counting = CountingAttack()
    monkeypatch.setitem(ATTACKS, "apgd", dataclasses.replace(ATTACKS["apgd"], function=counting))
    grid = [0.0, 1 / 255, 3 / 255, 5 / 255]
    accuracy_curve(model, batches_of(x[:24], y[:24], 8), grid, max_batch=max_batch)
    assert [n for n, _ in counting.calls] == sizes, "a batch's copies, max_batch at a time"
    per_batch = torch.cat([eps for _, eps in counting.calls]).view(3, 24)
    expected = torch.tensor(grid[1:]).repeat_interleave(8)
    assert torch.equal(per_batch, expected.expand(3, -1)), "8 copies per budget, none at 0"


def test_curve_attacks_no_more_copies_than_a_batch_by_default(trained, monkeypatch):
    """Memory stays that of one evaluation batch however many budgets the grid has."""
    model, x, y = trained
    counting = CountingAttack()
    monkeypatch.setitem(ATTACKS, "apgd", dataclasses.replace(ATTACKS["apgd"], function=counting))
    accuracy_curve(model, batches_of(x[:40], y[:40], 16), eps_grid(16 / 255))
    sizes = [n for n, _ in counting.calls]
    assert max(sizes) <= 16 and sum(sizes) == 40 * 16, sizes


class WrongOnClean(nn.Module):
    """Gradient masking at its plainest: wrong on the clean images ``x[wrong]`` exactly, right
    on any other point (the label of the nearest image of ``x``), with a zero input gradient."""

    def __init__(self, x, y, wrong, classes=10):
        super().__init__()
        self.register_buffer("x", x.flatten(1))
        self.register_buffer("y", y)
        self.register_buffer("wrong", wrong)
        self.classes = classes
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        dist = torch.cdist(
            x.flatten(1).float(), self.x, compute_mode="donot_use_mm_for_euclid_dist"
        )
        nearest = dist.argmin(1)
        exact = (dist.min(1).values == 0) & self.wrong[nearest]
        label = torch.where(exact, (self.y[nearest] + 1) % self.classes, self.y[nearest])
        # (x * w), not w * x.sum(): apgd cannot take the stride-0 gradient of a bare sum
        return 10 * nn.functional.one_hot(label, self.classes).float() + (x * self.w).sum()


def every_other(n):
    """True at the even indices: the images a WrongOnClean gets wrong."""
    return torch.arange(n) % 2 == 0


@pytest.mark.parametrize("attack", ["apgd", "pgd"])
def test_robust_only_if_correct_on_clean_too(trained, attack):
    """A model wrong on x but right around it is not robust: no budget may score above the
    clean accuracy of the same samples (AutoAttack's rule)."""
    _, x, y = trained
    x, y = x[:48], y[:48]
    model = WrongOnClean(x, y, every_other(len(y)))  # wrong on the even images exactly
    clean = clean_accuracy(model, [(x, y)])
    assert clean == 0.5
    curve = accuracy_curve(model, batches_of(x, y, 16), GRID[:5], attack=attack, steps=2, seed=0)
    assert curve == [clean] * 5, f"accuracy under attack above clean accuracy: {curve}"
    assert robust_accuracy(model, [(x, y)], 2 / 255, attack=attack, steps=2) <= clean


class NudgingAutoAttack:
    """Stands in for pyautoattack's AutoAttack: returns every image nudged by eps / 2."""

    def __init__(self, model, norm, eps, version, device):
        self.eps = eps

    def run_standard_evaluation(self, x, y, batch_size):
        return (x + self.eps / 2).clamp(0, 1), y


def test_autoattack_counts_robust_only_if_correct_on_clean_too(trained, monkeypatch):
    _, x, y = trained
    x, y = x[:48], y[:48]
    monkeypatch.setitem(sys.modules, "pyautoattack", types.ModuleType("pyautoattack"))
    monkeypatch.setattr(sys.modules["pyautoattack"], "AutoAttack", NudgingAutoAttack, raising=False)
    model = WrongOnClean(x, y, every_other(len(y)))
    assert autoattack_accuracy(model, batches_of(x, y, 16), 2 / 255) == 0.5


class StartProbe(nn.Module):
    """Right on x and wherever the perturbation from the nearest image of ``x`` sums to >= 0,
    wrong elsewhere, with a zero input gradient: its accuracy under attack is decided by the
    random start alone."""

    def __init__(self, x, y, classes=10):
        super().__init__()
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.classes = classes
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        flat = self.x.flatten(1)
        nearest = torch.cdist(x.flatten(1).float(), flat).argmin(1)
        up = (x - self.x[nearest]).flatten(1).sum(1) >= 0
        label = torch.where(up, self.y[nearest], (self.y[nearest] + 1) % self.classes)
        return 10 * nn.functional.one_hot(label, self.classes).float() + (x * self.w).sum()


@pytest.mark.parametrize("attack", ["apgd", "pgd"])
def test_seed_alone_decides_the_random_starts(trained, attack):
    """The same seed gives the same curve whatever torch's stream; the caller's stream is
    left as it was; and the probe does depend on the starts (another seed, another curve)."""
    _, x, y = trained
    model, batches = StartProbe(x[:128], y[:128]), batches_of(x[:128], y[:128])
    grid = [0.0, 2 / 255, 4 / 255]

    def curve(seed):
        return accuracy_curve(model, batches, grid, attack=attack, steps=2, seed=seed)

    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = curve(7)
    assert torch.equal(torch.get_rng_state(), state), "the caller's stream is left alone"
    torch.manual_seed(2)
    assert curve(7) == first
    assert curve(8) != first, "the probe must see the random starts"
    assert first[0] == 1.0 and all(0.3 < a < 0.7 for a in first[1:]), first


class AutocastSpy(nn.Module):
    """Wraps a model and records, at every forward, whether CPU autocast was on."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.autocast_seen = []

    def forward(self, x):
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return self.model(x)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_holds_inside_a_surrounding_autocast(trained, precision):
    model, x, y = trained
    spy = AutocastSpy(model)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "fp32"):
        accuracy_curve(
            spy, batches_of(x[:32], y[:32]), [0.0, 2 / 255], steps=2, precision=precision
        )
    assert spy.autocast_seen and set(spy.autocast_seen) == {precision == "bf16"}


def test_curve_in_eval_mode_restores_the_model(trained, spy):
    _, x, y = trained
    stats = [b.clone() for b in spy.buffers()]
    accuracy_curve(spy, batches_of(x[:32], y[:32]), [0.0, 2 / 255])
    assert_untouched(spy, stats)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attack="fgsm"), r"attack must be one of \['apgd', 'pgd'\]"),
        (dict(attack_kwargs={"alpha": 0.01}), "must not set alpha"),
        (dict(grid=[0.0, -1 / 255]), "grid must hold finite budgets >= 0"),
        (dict(grid=[]), "grid is empty"),
        (dict(batches=[]), "batches is empty"),
        (dict(max_batch=0), "max_batch must be an int >= 1"),
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(norm="l3"), "norm must be 'linf' or 'l2'"),
        (dict(precision="fp16"), "precision must be 'fp32' or 'bf16'"),
    ],
)
def test_curve_rejects_bad_arguments(trained, kwargs, match):
    model, x, y = trained
    args = dict(batches=batches_of(x[:8], y[:8]), grid=[0.0, 1 / 255]) | kwargs
    with pytest.raises(ValueError, match=match):
        accuracy_curve(model, **args)


@pytest.mark.gpu
def test_curve_on_cuda_takes_cpu_batches(trained):
    model, x, y = trained
    cuda_model = TinyCNN().cuda().eval()
    cuda_model.load_state_dict(model.state_dict())
    batches = batches_of(x, y)
    on_gpu = accuracy_curve(cuda_model, batches, GRID[::2], attack_kwargs=EXACT)
    on_cpu = accuracy_curve(model, batches, GRID[::2], attack_kwargs=EXACT)
    assert math.isclose(on_gpu[0], on_cpu[0])
    assert all(abs(g - c) <= 0.02 for g, c in zip(on_gpu, on_cpu, strict=True)), (on_gpu, on_cpu)
