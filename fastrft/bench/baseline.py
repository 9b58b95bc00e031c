"""The attacks a user writes today, in plain eager torch: the ladder's baseline rungs.

``pgd_baseline`` follows torchattacks' PGD, and with one step FGSM-RS (autograd.grad on the
input each step, then sign step, clamp to the ball, clamp to the box), and
``apgd_baseline`` follows AutoAttack's ``attack_single_run`` (boolean indexing, in-place
per-sample resets, host syncs included). They exist to be timed against and to be matched
step for step by fastrft's own attacks in the tests; they are not fastrft's attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, target) -> per-sample losses


def _input_grad(model: nn.Module, x_adv: Tensor, target: Tensor, loss_fn: LossFn) -> Tensor:
    x_adv = x_adv.detach().requires_grad_()
    loss = loss_fn(model(x_adv).float(), target).sum()
    return torch.autograd.grad(loss, [x_adv])[0]


def _project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    return torch.clamp(x + torch.clamp(x_adv - x, min=-eps, max=eps), min=0, max=1).detach()


def pgd_baseline(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    loss_fn: LossFn,
    random_start: bool = True,
) -> Tensor:
    """torchattacks' PGD (l_inf)."""
    start = x + torch.empty_like(x).uniform_(-eps, eps) if random_start else x
    x_adv = _project(start, x, eps)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, target, loss_fn)
        x_adv = _project(x_adv + alpha * grad.sign(), x, eps)
    return x_adv


def apgd_baseline(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, n_iter: int, rho: float = 0.75
) -> Tensor:
    """APGD-CE l_inf written the way AutoAttack's attack_single_run is, without random start,
    with fastrft's documented choice at the first checkpoint (compare with the start point's
    loss, not with a row of zeros)."""
    ce = nn.CrossEntropyLoss(reduction="none")
    n_iter_2, n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    x_adv = x.clone().requires_grad_()
    loss_indiv = ce(model(x_adv).float(), y)
    grad = torch.autograd.grad(loss_indiv.sum(), x_adv)[0]
    x_adv = x_adv.detach()
    with torch.no_grad():
        acc = model(x).argmax(1) == y
    x_best, x_best_adv, grad_best = x_adv.clone(), x_adv.clone(), grad.clone()
    loss_best = loss_indiv.detach().clone()
    loss_steps = torch.zeros(n_iter + 1, len(x), device=x.device)
    loss_steps[0] = loss_best
    step_size = 2 * eps * torch.ones(len(x), 1, 1, 1, device=x.device, dtype=x.dtype)
    x_adv_old = x_adv.clone()
    k, counter3 = n_iter_2, 0
    loss_best_last_check, reduced_last_check = loss_best.clone(), torch.ones_like(loss_best)
    for i in range(n_iter):
        grad2 = x_adv - x_adv_old
        x_adv_old = x_adv.clone()
        a = 0.75 if i > 0 else 1.0
        x_adv_1 = x_adv + step_size * torch.sign(grad)
        x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
        x_adv_1 = torch.clamp(
            torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps),
            0.0,
            1.0,
        )
        x_adv = x_adv_1.requires_grad_()
        logits = model(x_adv)
        loss_indiv = ce(logits.float(), y)
        grad = torch.autograd.grad(loss_indiv.sum(), x_adv)[0]
        x_adv = x_adv.detach()
        pred = logits.detach().argmax(1) == y
        acc = torch.min(acc, pred)
        x_best_adv[~pred] = x_adv[~pred]
        y1 = loss_indiv.detach()
        loss_steps[i + 1] = y1
        ind = y1 > loss_best
        x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], y1[ind]
        counter3 += 1
        if counter3 == k:
            t = sum((loss_steps[i + 1 - c] > loss_steps[i - c]).float() for c in range(k))
            fl_osc = (t <= k * rho).float()
            fl_no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
            fl_osc = torch.max(fl_osc, fl_no_impr)
            reduced_last_check, loss_best_last_check = fl_osc.clone(), loss_best.clone()
            ind = fl_osc > 0
            step_size[ind] /= 2.0
            x_adv[ind], grad[ind] = x_best[ind], grad_best[ind]
            counter3 = 0
            k = max(k - size_decr, n_iter_min)
    return torch.where((~acc).view(-1, 1, 1, 1), x_best_adv, x_best)
