"""How the paper evaluates: accuracy under attack over a grid of budgets, expected robustness,
and the delay time of a validation curve.

Expected robustness is accuracy averaged over budgets drawn uniformly from [0, eps_g],

    E.adv = (1 / eps_g) * integral_0^eps_g Acc_eps d eps,

estimated with the trapezoidal rule on a grid of step 1/255 under APGD-CE (10 steps, l_inf).

:func:`accuracy_curve` measures Acc_eps at every budget of the grid with one attack per batch
rather than one per budget: each image is repeated once per budget, each copy carries its
own eps (the attacks take a per-sample eps), and each copy's correctness is counted for its
budget. Budgets of 0 are clean predictions, never attacked. Models are evaluated in eval
mode, with their mode and parameters' requires_grad restored afterwards; inputs are pixels in
[0, 1] and are moved to the device of the model's first parameter.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import Tensor, nn

from fastrft.attacks import apgd, attack_mode, pgd
from fastrft.attacks.core import canonical_norm

__all__ = [
    "accuracy_curve",
    "autoattack_accuracy",
    "clean_accuracy",
    "delay_time",
    "eps_grid",
    "evaluate_checkpoint",
    "expected_robustness",
    "robust_accuracy",
]

Batches = Iterable[tuple[Tensor, Tensor]]
AttackName = Literal["apgd", "pgd"]
# pgd's default step, alpha = 2.5 * eps / steps, follows each copy's own budget
ATTACKS = {"apgd": apgd, "pgd": pgd}

# eps_grid's steps as fractions with small denominators (1/255 -> Fraction(1, 255))
MAX_DENOMINATOR = 10**6


def eps_grid(eps_max: float = 8 / 255, step: float = 1 / 255) -> list[float]:
    """[0, step, 2 step, ..., eps_max]: the paper's evaluation budgets (9 points for 8/255).

    Points are exact multiples: k/255 exactly as Python writes k/255 (not k * (1/255), which
    can differ in the last bit), so they can serve as keys and compare equal to budgets
    written by hand. ``eps_max`` must be a whole number of steps.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 0 < step < math.inf:
        raise ValueError(f"step must be a finite number > 0 (e.g. 1/255), got {step!r}")
    if isinstance(eps_max, bool) or not isinstance(eps_max, numbers.Real):
        raise ValueError(f"eps_max must be a number >= 0 (e.g. 8/255), got {eps_max!r}")
    if not 0 <= eps_max < math.inf:
        raise ValueError(f"eps_max must be a finite number >= 0 (e.g. 8/255), got {eps_max!r}")
    n = round(eps_max / step)
    if not math.isclose(n * step, eps_max, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"eps_max ({eps_max!r}) must be a whole number of steps ({step!r}), "
            "e.g. eps_max=8/255 with step=1/255"
        )
    unit = Fraction(step).limit_denominator(MAX_DENOMINATOR)
    if not math.isclose(float(unit), step, rel_tol=1e-12):
        unit = Fraction(step)  # no small denominator: exact binary multiples, rounded once
    return [float(k * unit) for k in range(n + 1)]


def expected_robustness(eps_grid: Sequence[float], accuracies: Sequence[float]) -> float:
    """E.adv: the trapezoidal integral of ``accuracies`` over ``eps_grid``, divided by eps_g.

    ``eps_grid`` must start at 0 (clean accuracy) and increase strictly; it may be uneven.
    eps_g is its last point. A one-point grid [0] is the Dirac at 0: clean accuracy.
    """
    grid = [float(e) for e in eps_grid]
    acc = [float(a) for a in accuracies]
    if not grid:
        raise ValueError("eps_grid is empty; pass at least [0.0] (see eps_grid())")
    if len(acc) != len(grid):
        raise ValueError(
            f"accuracies has {len(acc)} values but eps_grid has {len(grid)} points; "
            "pass one accuracy per budget"
        )
    if grid[0] != 0:
        raise ValueError(f"eps_grid must start at 0 (clean accuracy), got {grid[0]!r} first")
    if not all(math.isfinite(e) for e in grid):
        raise ValueError(f"eps_grid must hold finite budgets, got {grid}")
    if any(b <= a for a, b in itertools.pairwise(grid)):
        raise ValueError(f"eps_grid must increase strictly, got {grid}")
    if not all(math.isfinite(a) for a in acc):
        raise ValueError(f"accuracies must be finite, got {acc}")
    if len(grid) == 1:
        return acc[0]
    area = sum(
        (e1 - e0) * (a0 + a1) / 2
        for (e0, e1), (a0, a1) in zip(
            itertools.pairwise(grid), itertools.pairwise(acc), strict=True
        )
    )
    return area / grid[-1]


def clean_accuracy(model: nn.Module, batches: Batches) -> float:
    """Top-1 accuracy of ``model`` in eval mode over ``batches`` of (x, y)."""
    device = model_device(model)
    correct, total = torch.zeros((), dtype=torch.int64, device=device), 0
    with attack_mode(model, "eval"):
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += predict_correct(model, x, y).sum()
            total += len(y)
    return ratio(correct, total)[0]


def robust_accuracy(
    model: nn.Module,
    batches: Batches,
    eps: float,
    attack: AttackName = "apgd",
    steps: int = 10,
    norm: str = "linf",
    attack_kwargs: dict[str, Any] | None = None,
) -> float:
    """Accuracy under ``attack`` at budget ``eps`` (clean accuracy at eps = 0).

    ``attack_kwargs`` go to the attack (e.g. random_start, backend). The paper's Adv is
    ``robust_accuracy(model, batches, eps_g)``: APGD-CE, 10 steps, l_inf.
    """
    curve = accuracy_curve(model, batches, [eps], attack, steps, norm, attack_kwargs=attack_kwargs)
    return curve[0]


def accuracy_curve(
    model: nn.Module,
    batches: Batches,
    grid: Sequence[float],
    attack: AttackName = "apgd",
    steps: int = 10,
    norm: str = "linf",
    max_batch: int | None = None,
    attack_kwargs: dict[str, Any] | None = None,
) -> list[float]:
    """Accuracy under ``attack`` at every budget of ``grid``, in one pass over ``batches``.

    Each batch of B images is repeated once per non-zero budget and attacked once with a
    per-copy eps; ``max_batch`` caps the copies per attack call (the B * G copies are then
    attacked in chunks) when memory requires. pgd steps 2.5 * eps / steps for each copy.
    ``grid`` need not start at 0 or be sorted; pass it with the result to
    :func:`expected_robustness` when it starts at 0.
    """
    eps = torch.tensor(check_budgets(grid), dtype=torch.float32, device=model_device(model))
    run = attack_fn(attack, steps, norm, attack_kwargs)
    if max_batch is not None and (
        isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral) or max_batch < 1
    ):
        raise ValueError(f"max_batch must be an int >= 1 or None (no limit), got {max_batch!r}")
    clean, attacked = (eps == 0).nonzero().flatten(), eps.nonzero().flatten()
    correct, total = torch.zeros_like(eps, dtype=torch.int64), 0
    with attack_mode(model, "eval"):
        for x, y in batches:
            x, y = x.to(eps.device, non_blocking=True), y.to(eps.device, non_blocking=True)
            if len(clean):
                correct[clean] += predict_correct(model, x, y).sum()
            if len(attacked):
                correct[attacked] += correct_per_budget(model, x, y, eps[attacked], run, max_batch)
            total += len(y)
    return ratio(correct, total)


def correct_per_budget(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    run: Callable[..., Tensor],
    max_batch: int | None,
) -> Tensor:
    """How many of the B images stay correct at each budget of ``eps`` (G,): the B * G copies,
    copy i being image i % B at budget i // B, attacked ``max_batch`` copies at a time."""
    b, g = len(y), len(eps)
    counts = torch.zeros(g, dtype=torch.int64, device=y.device)
    chunk = b * g if max_batch is None else max_batch
    for start in range(0, b * g, chunk):
        copy = torch.arange(start, min(start + chunk, b * g), device=y.device)
        image, budget = copy % b, copy // b
        x_adv = run(model, x[image], y[image], eps[budget])
        counts.index_add_(0, budget, predict_correct(model, x_adv, y[image]).long())
    return counts


def delay_time(val_accuracies: Sequence[float], threshold: float = 0.05) -> int | None:
    """The first (0-based) epoch whose validation accuracy exceeds ``threshold`` (the paper's
    5%), or None if none does: how long the robust loss delayed task adaptation."""
    return next((epoch for epoch, acc in enumerate(val_accuracies) if acc > threshold), None)


def attack_fn(
    attack: str, steps: int, norm: str, attack_kwargs: dict[str, Any] | None
) -> Callable[..., Tensor]:
    """``attack`` as a function of (model, x, y, eps), checked before any batch is read."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {attack!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    kwargs = dict(attack_kwargs or {})
    if "alpha" in kwargs:
        raise ValueError(
            "attack_kwargs must not set alpha: one step size cannot suit every budget; "
            "pgd steps 2.5 * eps / steps for each budget"
        )
    return functools.partial(ATTACKS[attack], steps=steps, norm=canonical_norm(norm), **kwargs)


def check_budgets(grid: Sequence[float]) -> list[float]:
    """``grid`` as a list of floats, each finite and >= 0."""
    budgets = [float(e) for e in grid]
    if not budgets:
        raise ValueError("grid is empty; pass budgets such as eps_grid(8/255)")
    bad = [e for e in budgets if not 0 <= e < math.inf]
    if bad:
        raise ValueError(f"grid must hold finite budgets >= 0, got {bad}")
    return budgets


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter lives (the CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return torch.device("cpu") if param is None else param.device


@torch.no_grad()
def predict_correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per sample: whether the model's top-1 prediction is the label."""
    return model(x).argmax(1) == y


def ratio(correct: Tensor, total: int) -> list[float]:
    """correct / total as floats, read from the device once."""
    if total == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    return (correct.double() / total).reshape(-1).tolist()


def autoattack_accuracy(
    model: nn.Module, batches: Batches, eps: float, norm: str = "linf", batch_size: int = 256
) -> float:
    """Accuracy under the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) at ``eps``,
    through its own package (``pip install pyautoattack``): a peer's verdict, hours on a
    large set, so only for checks."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:
        raise ValueError(
            "AutoAttack is not installed: pip install 'fastrft[autoattack]' "
            "(the pyautoattack package)"
        ) from err
    if eps == 0:
        return clean_accuracy(model, batches)
    device = model_device(model)
    xs, ys = zip(*((x.to(device), y.to(device)) for x, y in batches), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    norm = {"linf": "Linf", "l2": "L2"}[canonical_norm(norm)]
    with attack_mode(model, "eval"):
        adversary = AutoAttack(model, norm=norm, eps=eps, version="standard", device=device)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        return ratio(predict_correct(model, x_adv, y).sum(), len(y))[0]


def evaluate_checkpoint(
    path: str | Path,
    *,
    eps_max: float | None = None,
    grid_step: float = 1 / 255,
    attack: str = "apgd",
    steps: int = 10,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The paper's evaluation of a saved run on its validation split: the accuracy-vs-eps
    curve on [0, eps_max] (one batched attack; AutoAttack runs once per budget), clean and
    robust accuracy at the run's eps, and E.adv up to it. ``overrides`` are config keys
    (e.g. data.root=PATH, device=cpu) applied over the run's saved config."""
    from fastrft.config import load_config
    from fastrft.data import build_loaders
    from fastrft.engine.checkpoint import load_checkpoint
    from fastrft.engine.devices import pick_device
    from fastrft.engine.distributed import Dist
    from fastrft.models import build_model

    state = load_checkpoint(path)
    cfg = load_config([], overrides, base=yaml.safe_load(state["config"]))
    device = pick_device(cfg.device, Dist())  # as training picks it, and checks it
    model = build_model(cfg.model.name, state["num_classes"], img_size=cfg.data.img_size)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    batches = build_loaders(cfg.data, device, seed=cfg.seed).val
    eps_g = cfg.attack.eps
    grid = eps_grid(eps_max if eps_max is not None else eps_g, grid_step)
    if attack == "autoattack":
        curve = [autoattack_accuracy(model, batches, e, cfg.attack.norm) for e in grid]
    else:
        curve = accuracy_curve(model, batches, grid, attack, steps, cfg.attack.norm)
    upto = [i for i, e in enumerate(grid) if e <= eps_g + 1e-12] or [0]
    return {
        "checkpoint": str(path),
        "attack": attack,
        "steps": steps,
        "eps": eps_g,
        "eps_grid": grid,
        "accuracy_curve": curve,
        "clean_acc": curve[0],
        "adv_acc": curve[upto[-1]],
        "expected_robustness": expected_robustness(
            [grid[i] for i in upto], [curve[i] for i in upto]
        ),
        "num_samples": batches.num_samples,
    }
