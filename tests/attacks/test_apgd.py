import copy

import pytest
import torch

from fastrft.attacks import apgd, apgd_checkpoints
from fastrft.attacks.losses import dlr
from fastrft.bench.baseline import apgd_baseline
from tests.helpers import assert_close, assert_same_trajectory


def test_checkpoints_match_the_paper_for_100_steps():
    """Croce and Hein (2020), section 3.2: w = ceil(p * 100) for p = 0.22, 0.41, 0.57, 0.70,
    0.80, 0.87, 0.93, 0.99; the check after w iterations sits at 0-based iteration w - 1."""
    assert sorted(apgd_checkpoints(100)) == [w - 1 for w in (22, 41, 57, 70, 80, 87, 93, 99)]


@pytest.mark.parametrize("steps", [1, 2, 7, 10, 13, 50])
def test_checkpoints_periods_are_consistent(steps):
    checks = apgd_checkpoints(steps)
    last = -1
    for i, period in sorted(checks.items()):
        assert i - last == period and 0 <= i < steps
        last = i


def test_paper_step_counts_check_every_step():
    """With 7 or 10 steps (the paper's) the periods shrink to one step quickly."""
    assert apgd_checkpoints(7) == dict.fromkeys(range(7), 1)
    assert apgd_checkpoints(10) == {1: 2, **dict.fromkeys(range(2, 10), 1)}


def test_dlr_matches_sorting_formula():
    logits = torch.randn(64, 7)
    y = torch.randint(0, 7, (64,))
    y[:8] = logits[:8].argmax(1)  # the case where y is the top class
    z, _ = logits.sort(1, descending=True)
    z_y = logits[torch.arange(64), y]
    other = torch.where(logits.argmax(1) == y, z[:, 1], z[:, 0])
    assert_close(dlr(logits, y), -(z_y - other) / (z[:, 0] - z[:, 2] + 1e-12), atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fused_and_reference_backends_agree(trained, norm, device):
    """The attack on Triton kernels follows the same trajectory as on the torch references
    (no random start, so both runs are deterministic)."""
    model, x, y = trained
    model, x, y = copy.deepcopy(model).to(device), x[:32].to(device), y[:32].to(device)
    eps = 4 / 255 if norm == "linf" else 0.3
    a = apgd(model, x, y, eps, steps=5, norm=norm, random_start=False, backend="triton")
    b = apgd(model, x, y, eps, steps=5, norm=norm, random_start=False, backend="torch")
    assert_same_trajectory(a, b, norm, what=f"apgd {norm}")


def test_restarts_never_hurt(trained):
    model, x, y = trained
    torch.manual_seed(0)
    one = apgd(model, x, y, 2 / 255, steps=5)
    torch.manual_seed(0)
    three = apgd(model, x, y, 2 / 255, steps=5, restarts=3)
    wrong = lambda xa: model(xa).argmax(1) != y  # noqa: E731
    assert (wrong(three) | ~wrong(one)).all(), "a sample fooled by the first run came back"


@pytest.mark.parametrize("steps", [7, 10, 25])
def test_matches_autoattack_structured_reference(trained, steps):
    """Same trajectory, step for step, as an implementation in AutoAttack's own style: checks
    the momentum, the checkpoints, both halving conditions and the restarts from x_best."""
    model, x, y = trained
    x, y = x[:128], y[:128]
    ours = apgd(model, x, y, 4 / 255, steps=steps, random_start=False, backend="torch")
    theirs = apgd_baseline(model, x, y, 4 / 255, steps)
    assert_close(ours, theirs, atol=1e-6, what=f"APGD-{steps}")
