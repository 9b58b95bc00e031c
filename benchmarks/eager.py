"""The eager torch chains the fused kernels replace: what a user writes today.

Each follows a public implementation users know (torchattacks' PGD and PGDL2, AutoAttack's
APGD), written with per-sample budgets and layout-agnostic norms (``vector_norm`` over the
non-batch dimensions: ``.view(N, -1)`` fails on channels_last, and ``flatten(1)`` would copy it).
Budgets given as per-sample float32 tensors are cast to the images' dtype, so a bf16 chain stays
in bf16 as it does with torchattacks' Python floats. These are the baselines of every speed-up
in benchmarks/, shared by test_bench_kernels.py and kernels_gpu.py; the exact formulas the
kernels must match are the ``*_reference`` functions beside each kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _per_sample(v: float | Tensor, like: Tensor) -> float | Tensor:
    """A float as it is; a (N,) tensor as (N, 1, 1, ...) in ``like``'s dtype."""
    if isinstance(v, Tensor):
        return v.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)
    return v


def _norm(t: Tensor) -> Tensor:
    """Per-sample l2 norm, (N, 1, 1, ...), in any memory layout without a copy."""
    return torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())), keepdim=True)


def linf_step_eager(
    x_adv: Tensor, grad: Tensor, x: Tensor, eps: float | Tensor, alpha: float | Tensor
) -> Tensor:
    """torchattacks PGD's step: sign step, clamp the perturbation, clamp to the box."""
    eps, alpha = _per_sample(eps, x), _per_sample(alpha, x)
    x_adv = x_adv + alpha * grad.sign()
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1)


def l2_step_eager(
    x_adv: Tensor, grad: Tensor, x: Tensor, eps: float | Tensor, alpha: float | Tensor
) -> Tensor:
    """torchattacks PGDL2's step: normalised gradient step, rescale into the ball, clamp."""
    eps, alpha = _per_sample(eps, x), _per_sample(alpha, x)
    grad = grad / (_norm(grad) + 1e-10)
    x_adv = x_adv + alpha * grad
    delta = x_adv - x
    factor = torch.clamp(eps / _norm(delta), max=1.0)
    return torch.clamp(x + delta * factor, min=0, max=1)


def _l2_project(w: Tensor, x: Tensor, eps: float | Tensor) -> Tensor:
    d = w - x
    dn = _norm(d)
    if not isinstance(eps, Tensor):
        eps = torch.full_like(dn, eps)
    return torch.clamp(x + d / (dn + 1e-12) * torch.min(eps, dn), 0.0, 1.0)


def apgd_update_eager(
    x_adv: Tensor,
    x_prev: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: float | Tensor,
    step_size: float | Tensor,
    momentum: float,
    norm: str = "linf",
) -> None:
    """AutoAttack APGD's iterate update with momentum, in place like ``apgd_update_``:
    ``x_adv`` becomes the new iterate and ``x_prev`` the old one."""
    eps, eta, a = _per_sample(eps, x), _per_sample(step_size, x), momentum
    grad2 = x_adv - x_prev
    if norm == "linf":
        z = torch.clamp(
            torch.min(torch.max(x_adv + eta * torch.sign(grad), x - eps), x + eps), 0, 1
        )
        w = x_adv + (z - x_adv) * a + grad2 * (1 - a)
        x_new = torch.clamp(torch.min(torch.max(w, x - eps), x + eps), 0.0, 1.0)
    else:
        z = _l2_project(x_adv + eta * grad / (_norm(grad) + 1e-12), x, eps)
        w = x_adv + (z - x_adv) * a + grad2 * (1 - a)
        x_new = _l2_project(w, x, eps)
    x_prev.copy_(x_adv)
    x_adv.copy_(x_new)


def random_start_eager(x: Tensor, eps: float | Tensor, norm: str = "linf") -> Tensor:
    """torchattacks' random starts: PGD's uniform noise, PGDL2's scaled Gaussian.

    PGDL2 draws the radius as r = u; here r = u^(1/d), uniform in the ball like the kernel
    (the same kernels either way, so the same cost).
    """
    eps = _per_sample(eps, x)
    if norm == "linf":
        # uniform_(-eps, eps) takes Python floats only: scale a U(-1, 1) draw per sample
        return torch.clamp(x + torch.empty_like(x).uniform_(-1, 1) * eps, min=0, max=1)
    delta = torch.empty_like(x).normal_()
    n = _norm(delta)
    r = torch.rand_like(n).pow(1.0 / max(x[0].numel(), 1))
    return torch.clamp(x + delta * (r / n * eps), min=0, max=1)
