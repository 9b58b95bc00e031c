"""Auto-PGD (Croce and Hein, 2020): the paper's attack, APGD-CE with 7 steps in training
and 10 in evaluation.

Per sample: momentum 0.75, a step size starting at 2 * eps and halved at checkpoints where
the loss oscillated (it rose in at most rho = 0.75 of the steps since the last checkpoint)
or where the best loss did not improve and the step was not halved at the last checkpoint;
a halving restarts the sample from its best point. Checkpoint positions depend on ``steps``
alone and every per-sample decision is a torch.where, so the attack has static shapes and
no host syncs: it can be captured whole in a CUDA graph.

Differences from AutoAttack's implementation, by design: the random start is uniform in the
ball (AutoAttack scales it so one coordinate sits on the sphere); the oscillation count at
the first checkpoint compares with the loss at the start point (AutoAttack compares with a
row of zeros there); the last iterate is evaluated with a forward pass only; and a sample
never misclassified returns its highest-loss point rather than x.

Which point comes back (``best``): "adversarial" (the default, AutoAttack's rule for
evaluation) returns a sample's last misclassified iterate when there is one, else its
highest-loss iterate; "loss" returns the highest-loss iterate for every sample, Madry's inner
maximisation and the rule of the authors' related training code. The rule alone moved an
RFT-fix run's clean accuracy by 9 points: training uses "loss" (``attack.best``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from fastrft.kernels import Backend, apgd_update_
from fastrft.kernels import random_start as random_start_in_ball

from .core import (
    ModelMode,
    attack_mode,
    loss_and_grad,
    prepare,
    succeeded,
    take_where,
    with_gradients,
)
from .losses import LossFn, attack_loss

Best = Literal["loss", "adversarial"]


def apgd_checkpoints(steps: int) -> dict[int, int]:
    """{iteration: length of the period it closes} for the step-size checks.

    AutoAttack's schedule: the first period is 22% of the steps, each next one 3% of the
    steps shorter, never under 6% (each at least one step)."""
    period = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    checks, i = {}, period - 1
    while i < steps:
        checks[i] = period
        period = max(period - shrink, shortest)
        i += period
    return checks


@dataclass
class APGDResult:
    """Per sample: the last misclassified point, the highest-loss point, whether the attack
    ever succeeded, and the highest loss."""

    x_adv: Tensor
    x_best: Tensor
    success: Tensor
    loss_best: Tensor

    def best(self, rule: Best) -> Tensor:
        """ "loss": the highest-loss point; "adversarial": the last misclassified point where
        there is one, else the highest-loss point."""
        if rule == "loss":
            return self.x_best
        return take_where(self.success, self.x_adv, self.x_best.clone())


def apgd_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    steps: int,
    norm: str,
    loss_fn: LossFn,
    targeted: bool,
    random_start: bool,
    rho: float,
    momentum: float,
    backend: Backend,
    *,
    seed: int | Tensor | None = None,
    ids: Tensor | None = None,
) -> APGDResult:
    """One APGD run on a model already in attack mode; eps is a float32 (N,) tensor; seed and
    ids are the random start's (:func:`fastrft.kernels.random_start`)."""
    if random_start:
        x_adv = random_start_in_ball(x, eps, norm, seed=seed, ids=ids, backend=backend)
    else:
        x_adv = x.clone()
    losses, logits, grad = loss_and_grad(model, x_adv, y, loss_fn)
    success = succeeded(logits, y, targeted)
    x_best_adv, x_best, grad_best = x_adv.clone(), x_adv.clone(), grad.clone()
    loss_best, loss_prev = losses.clone(), losses
    step_size = 2.0 * eps
    x_prev = x_adv.clone()
    checkpoints = apgd_checkpoints(steps)
    rises = torch.zeros_like(losses)
    loss_best_at_check = loss_best.clone()
    halved_at_check = torch.ones_like(success)

    for i in range(steps):
        apgd_update_(
            x_adv,
            x_prev,
            grad,
            x,
            eps,
            step_size,
            momentum if i > 0 else 1.0,
            norm,
            backend=backend,
        )
        last = i == steps - 1
        losses, logits, grad_new = loss_and_grad(model, x_adv, y, loss_fn, need_grad=not last)
        hit = succeeded(logits, y, targeted)
        take_where(hit, x_adv, x_best_adv)
        success |= hit
        improved = losses > loss_best
        take_where(improved, x_adv, x_best)
        loss_best = torch.where(improved, losses, loss_best)
        rises += (losses > loss_prev).float()
        loss_prev = losses
        if last:
            break
        grad = grad_new
        take_where(improved, grad, grad_best)
        if i in checkpoints:
            oscillated = rises <= checkpoints[i] * rho
            stalled = ~halved_at_check & (loss_best_at_check >= loss_best)
            halve = oscillated | stalled
            step_size = torch.where(halve, step_size / 2, step_size)
            take_where(halve, x_best, x_adv)
            take_where(halve, grad_best, grad)
            halved_at_check, loss_best_at_check = halve, loss_best.clone()
            rises.zero_()
    return APGDResult(x_best_adv, x_best, success, loss_best)


@with_gradients
def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    steps: int = 10,
    norm: str = "linf",
    loss: str = "ce",
    random_start: bool = True,
    restarts: int = 1,
    rho: float = 0.75,
    momentum: float = 0.75,
    targeted: bool = False,
    *,
    best: Best = "adversarial",
    model_mode: ModelMode = "eval",
    freeze_params: bool = True,
    backend: Backend = "auto",
    validate: bool = True,
    seed: int | Tensor | None = None,
    ids: Tensor | None = None,
) -> Tensor:
    """APGD attack; returns for each sample the best point found, by the rule ``best``.

    ``best="adversarial"`` (the default, AutoAttack's rule, for evaluation): a sample
    misclassified at any step returns the last such point, a sample never misclassified its
    highest-loss point. ``best="loss"`` (training, Madry's inner maximisation): every sample
    returns its highest-loss point. ``restarts`` > 1 reruns the attack from new random starts
    and keeps per sample the first success ("adversarial") or the higher loss ("loss");
    with a ``seed``, restart r starts from ``seed + r``. ``seed`` and ``ids`` are the random
    start's, as for :func:`fastrft.attacks.pgd`: with ids, a sample's result does not depend
    on the batch it is attacked in. Other arguments as for :func:`fastrft.attacks.pgd`,
    including its use under ``torch.no_grad()`` and ``torch.inference_mode()``; ``loss``
    "dlr" needs at least three classes.
    """
    if best not in ("loss", "adversarial"):
        raise ValueError(
            f"best must be 'loss' (highest-loss point, training) or 'adversarial' (last "
            f"misclassified point, evaluation), got {best!r}"
        )
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if not 0.0 <= rho <= 1.0 or not 0.0 < momentum <= 1.0:
        raise ValueError(f"rho must be in [0, 1] and momentum in (0, 1], got {rho}, {momentum}")
    norm, x, y, eps_v = prepare(
        x,
        y,
        eps,
        norm=norm,
        steps=steps,
        loss=loss,
        targeted=targeted,
        model_mode=model_mode,
        validate=validate,
    )
    loss_fn = attack_loss(loss, targeted)

    def run(restart: int) -> APGDResult:
        return apgd_run(
            model,
            x,
            y,
            eps_v,
            steps,
            norm,
            loss_fn,
            targeted,
            random_start or restart > 0,
            rho,
            momentum,
            backend,
            seed=None if seed is None else seed + restart,
            ids=ids,
        )

    with attack_mode(model, model_mode, freeze_params):
        result = run(0)
        for restart in range(1, restarts):
            _merge(result, run(restart))
    return result.best(best)


def _merge(result: APGDResult, again: APGDResult) -> None:
    """Keep, per sample, the first success and the higher-loss point."""
    new_hit = again.success & ~result.success
    take_where(new_hit, again.x_adv, result.x_adv)
    higher = again.loss_best > result.loss_best
    take_where(higher, again.x_best, result.x_best)
    result.loss_best = torch.maximum(result.loss_best, again.loss_best)
    result.success |= again.success
