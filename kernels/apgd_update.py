"""APGD's iterate update with momentum (Croce & Hein 2020, AutoAttack's apgd), in place.

    linf:  z     = clamp(clip(x_k + eta_n * sign(g), x - eps_n, x + eps_n), 0, 1)
           w     = x_k + a * (z - x_k) + (1 - a) * (x_k - x_prev)
           x_new = clamp(clip(w, x - eps_n, x + eps_n), 0, 1)
    l2:    z     = l2_step(x_k, g, x, eps_n, eta_n)
           w     = x_k + a * (z - x_k) + (1 - a) * (x_k - x_prev)
           x_new = clamp(x + (w - x) * min(eps_n, ||w - x||_n) / (||w - x||_n + 1e-12), 0, 1)

and x_prev <- x_k, so the caller rotates its two buffers without allocating. eps_n and the
step size eta_n are per sample; the momentum a is one number (0.75, and 1.0 at the first
iteration). l_inf is one kernel: reads x_k, x_prev, g, x once and writes x_adv and x_prev.
l_2 runs l2_step's two passes into a float32 scratch z, then two more passes: the per-sample
sums of ||w - x||^2 (deterministic partials, as in l2_step), then the update.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import (
    Backend,
    Norm,
    check_batch,
    check_kernel_layout,
    check_norm,
    launcher_op,
    like_layout,
    on_tensors_device,
    per_sample,
    reduce_launch,
    use_triton,
    view_per_sample,
)
from .l2_step import TINY, l2_step_fp32, l2_step_triton

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


if triton is not None:

    @triton.jit
    def _apgd_linf_kernel(
        xadv_ptr,
        xprev_ptr,
        grad_ptr,
        x_ptr,
        eps_ptr,
        eta_ptr,
        momentum,
        per_sample_numel,
        BLOCK: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        eps = tl.load(eps_ptr + sample)
        eta = tl.load(eta_ptr + sample)
        xk_raw = tl.load(xadv_ptr + idx, mask=mask)
        xk = xk_raw.to(tl.float32)
        xp = tl.load(xprev_ptr + idx, mask=mask).to(tl.float32)
        g = tl.load(grad_ptr + idx, mask=mask).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        lo, hi = x - eps, x + eps
        z = xk + tl.where(g > 0, eta, tl.where(g < 0, -eta, 0.0))
        z = tl.minimum(tl.maximum(tl.minimum(tl.maximum(z, lo), hi), 0.0), 1.0)
        w = xk + momentum * (z - xk) + (1.0 - momentum) * (xk - xp)
        v = tl.minimum(tl.maximum(tl.minimum(tl.maximum(w, lo), hi), 0.0), 1.0)
        # x_prev takes the old iterate bit for bit: store what was loaded, not a round trip
        tl.store(xprev_ptr + idx, xk_raw.to(xprev_ptr.dtype.element_ty), mask=mask)
        tl.store(xadv_ptr + idx, v.to(xadv_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _apgd_l2_partials_kernel(
        xadv_ptr,
        xprev_ptr,
        z_ptr,
        x_ptr,
        part_ptr,
        momentum,
        per_sample_numel,
        num_blocks,
        BLOCK: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        offs = block * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        xk = tl.load(xadv_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        xp = tl.load(xprev_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        e = xk + momentum * (z - xk) + (1.0 - momentum) * (xk - xp) - x
        tl.store(part_ptr + sample * num_blocks + block, tl.sum(e * e, axis=0))

    @triton.jit
    def _apgd_l2_apply_kernel(
        xadv_ptr,
        xprev_ptr,
        z_ptr,
        x_ptr,
        eps_ptr,
        part_ptr,
        momentum,
        per_sample_numel,
        num_blocks,
        BLOCK: tl.constexpr,
        BLOCKS_P2: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        slots = tl.arange(0, BLOCKS_P2)
        ss = tl.load(part_ptr + sample * num_blocks + slots, mask=slots < num_blocks, other=0.0)
        w_norm = tl.sqrt(tl.sum(ss, axis=0))
        eps = tl.load(eps_ptr + sample)
        scale = tl.minimum(eps, w_norm) / (w_norm + 1e-12)

        # last-first, as in l2_step's apply pass: begin on what the partials pass left in L2
        # (the partials pass runs first-first, after l2_step's apply pass ended on block 0)
        offs = (num_blocks - 1 - tl.program_id(1)) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        xk_raw = tl.load(xadv_ptr + idx, mask=mask)
        xk = xk_raw.to(tl.float32)
        xp = tl.load(xprev_ptr + idx, mask=mask).to(tl.float32)
        z = tl.load(z_ptr + idx, mask=mask).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        w = xk + momentum * (z - xk) + (1.0 - momentum) * (xk - xp)
        v = x + (w - x) * scale
        v = tl.minimum(tl.maximum(v, 0.0), 1.0)
        tl.store(xprev_ptr + idx, xk_raw.to(xprev_ptr.dtype.element_ty), mask=mask)
        tl.store(xadv_ptr + idx, v.to(xadv_ptr.dtype.element_ty), mask=mask)


@on_tensors_device
def apgd_update_triton(
    x_adv: Tensor,
    x_prev: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: Tensor,
    step_size: Tensor,
    momentum: float,
    norm: str,
) -> None:
    """Launch the update. Image tensors share shape and strides; eps, step_size: float32 (N,)."""
    n = x.shape[0]
    if n == 0 or x.numel() == 0:
        return
    m = x.numel() // n
    block, warps, num_blocks, blocks_p2 = reduce_launch(m)
    grid = (n, num_blocks)
    if norm == "linf":
        _apgd_linf_kernel[grid](
            x_adv, x_prev, grad, x, eps, step_size, momentum, m, BLOCK=block, num_warps=warps
        )
        return
    # z in float32: it is an intermediate, and rounding it to bf16 would add an error that
    # the reference (float32 throughout) does not make
    z = torch.empty_like(x_adv, dtype=torch.float32)
    l2_step_triton(x_adv, grad, x, eps, step_size, z)
    partials = torch.empty((n, num_blocks), dtype=torch.float32, device=x.device)
    _apgd_l2_partials_kernel[grid](
        x_adv, x_prev, z, x, partials, momentum, m, num_blocks, BLOCK=block, num_warps=warps
    )
    _apgd_l2_apply_kernel[grid](
        x_adv,
        x_prev,
        z,
        x,
        eps,
        partials,
        momentum,
        m,
        num_blocks,
        BLOCK=block,
        BLOCKS_P2=blocks_p2,
        num_warps=warps,
    )


_apgd_update_op = launcher_op("apgd_update", apgd_update_triton, mutates=("x_adv", "x_prev"))


def apgd_update_reference(
    x_adv: Tensor,
    x_prev: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: Tensor,
    step_size: Tensor,
    momentum: float,
    norm: Norm,
) -> tuple[Tensor, Tensor]:
    """Plain torch, the formulas literally in float32: returns (x_new, x_prev_new).
    eps, step_size: ready float32 (N,) vectors (:func:`fastrft.kernels.per_sample`)."""
    check_norm(norm)
    eps_v, eta_v = view_per_sample(eps, x_adv), view_per_sample(step_size, x_adv)
    xk, xp, xf, a = x_adv.float(), x_prev.float(), x.float(), momentum
    lo, hi = xf - eps_v, xf + eps_v
    if norm == "linf":
        z = torch.minimum(torch.maximum(xk + eta_v * grad.float().sign(), lo), hi).clamp(0, 1)
        w = xk + a * (z - xk) + (1 - a) * (xk - xp)
        x_new = torch.minimum(torch.maximum(w, lo), hi).clamp(0, 1)
    else:
        z = l2_step_fp32(x_adv, grad, x, eps, step_size)
        w = xk + a * (z - xk) + (1 - a) * (xk - xp)
        w_norm = view_per_sample((w - xf).flatten(1).norm(dim=1), w)
        x_new = (xf + (w - xf) * torch.minimum(eps_v, w_norm) / (w_norm + TINY)).clamp(0, 1)
    return x_new.to(x_adv.dtype), x_adv.clone()


def apgd_update_(
    x_adv: Tensor,
    x_prev: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: float | Tensor,
    step_size: float | Tensor,
    momentum: float,
    norm: Norm = "linf",
    *,
    backend: Backend = "auto",
) -> None:
    """One APGD update in place: ``x_adv`` becomes the new iterate, ``x_prev`` the old one.

    ``eps`` and ``step_size`` are floats or per-sample tensors (a ready float32 (N,) vector on
    x_adv's device is used as it is, :func:`fastrft.kernels.per_sample`); ``momentum`` is
    APGD's ``a`` (1.0 at the first iteration, where x_prev still has to hold finite values,
    e.g. a copy of x_adv: 0 * NaN is NaN). ``x_prev`` must share ``x_adv``'s memory layout.
    """
    check_norm(norm)
    check_batch("grad", grad, x_adv)
    check_batch("x", x, x_adv)
    check_kernel_layout(x_adv, x_prev=x_prev)
    n = x_adv.shape[0]
    eps_v, eta_v = per_sample(eps, n, x_adv.device), per_sample(step_size, n, x_adv.device)
    if use_triton(x_adv, backend):
        _apgd_update_op(
            x_adv,
            x_prev,
            like_layout(grad, x_adv),
            like_layout(x, x_adv),
            eps_v,
            eta_v,
            float(momentum),
            norm,
        )
    else:
        x_new, x_prev_new = apgd_update_reference(
            x_adv, x_prev, grad, x, eps_v, eta_v, momentum, norm
        )
        x_prev.copy_(x_prev_new)
        x_adv.copy_(x_new)
