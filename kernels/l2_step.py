"""One l_2 attack step, fused: normalised gradient step, projection onto the ball, clamp to the box.

    d     = x_adv + alpha_n * g / (||g||_n + 1e-12) - x
    x_new = clamp(x + d * min(eps_n, ||d||_n) / (||d||_n + 1e-12), 0, 1)

with ||.||_n the l_2 norm over sample n and a budget eps_n and step alpha_n per sample
(AutoAttack's formula: normalise, then scale by min(eps, norm)).

Two passes instead of three: with d0 = x_adv - x and s = alpha / (||g|| + 1e-12),

    ||d||^2 = ||d0||^2 + 2 s <d0, g> + s^2 ||g||^2,

so one reduction pass over (x_adv, g, x) gives all three per-sample sums, and the apply pass
reads the same three tensors again and writes the result. The reduction is deterministic:
each program writes its partial sums to its own slot of a float32 buffer (no atomics), and
every program of the apply pass sums its sample's slots in the same fixed order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import (
    Backend,
    launcher_op,
    on_tensors_device,
    reduce_launch,
    run_step,
    view_per_sample,
)

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None

TINY = 1e-12  # AutoAttack's guard against dividing by a zero norm


if triton is not None:

    @triton.jit
    def _l2_partials_kernel(
        xadv_ptr,
        grad_ptr,
        x_ptr,
        part_ptr,
        per_sample_numel,
        num_blocks,
        BLOCK: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        offs = block * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        # masked lanes load 0, so they add nothing to any of the sums
        xa = tl.load(xadv_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(grad_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        d0 = xa - x
        # partials laid out (N, 3, num_blocks): the apply pass reads three contiguous rows
        row = part_ptr + sample * 3 * num_blocks + block
        tl.store(row, tl.sum(g * g, axis=0))
        tl.store(row + num_blocks, tl.sum(d0 * g, axis=0))
        tl.store(row + 2 * num_blocks, tl.sum(d0 * d0, axis=0))

    @triton.jit
    def _l2_apply_kernel(
        xadv_ptr,
        grad_ptr,
        x_ptr,
        eps_ptr,
        alpha_ptr,
        part_ptr,
        out_ptr,
        per_sample_numel,
        num_blocks,
        BLOCK: tl.constexpr,
        BLOCKS_P2: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        # the sample's partial sums, added in a fixed order by every program of the sample
        slots = tl.arange(0, BLOCKS_P2)
        smask = slots < num_blocks
        row = part_ptr + sample * 3 * num_blocks + slots
        gg = tl.sum(tl.load(row, mask=smask, other=0.0), axis=0)
        dg = tl.sum(tl.load(row + num_blocks, mask=smask, other=0.0), axis=0)
        dd = tl.sum(tl.load(row + 2 * num_blocks, mask=smask, other=0.0), axis=0)
        eps = tl.load(eps_ptr + sample)
        alpha = tl.load(alpha_ptr + sample)
        g_norm = tl.sqrt(gg)
        s = alpha / (g_norm + 1e-12)
        # s^2 ||g||^2 as (s ||g||)^2 <= alpha^2: s alone reaches alpha * 1e12 for a zero gradient
        step = s * g_norm
        # the expansion can round slightly below 0 when d0 and s g nearly cancel
        d_norm = tl.sqrt(tl.maximum(dd + 2.0 * s * dg + step * step, 0.0))
        scale = tl.minimum(eps, d_norm) / (d_norm + 1e-12)

        # blocks run last-first: programs start in launch order, so the apply pass begins on
        # the blocks the reduction pass read last, while they are still in L2
        offs = (num_blocks - 1 - tl.program_id(1)) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        xa = tl.load(xadv_ptr + idx, mask=mask).to(tl.float32)
        g = tl.load(grad_ptr + idx, mask=mask).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        d = xa + s * g - x
        v = x + d * scale
        v = tl.minimum(tl.maximum(v, 0.0), 1.0)
        tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


@on_tensors_device
def l2_step_triton(
    x_adv: Tensor, grad: Tensor, x: Tensor, eps: Tensor, alpha: Tensor, out: Tensor
) -> None:
    """Launch both passes. Image tensors share shape and strides (out may differ in dtype and
    may be x_adv itself); eps, alpha: float32 (N,)."""
    n = x.shape[0]
    if n == 0 or x.numel() == 0:
        return
    m = x.numel() // n
    block, warps, num_blocks, blocks_p2 = reduce_launch(m)
    partials = torch.empty((n, 3, num_blocks), dtype=torch.float32, device=x.device)
    grid = (n, num_blocks)
    _l2_partials_kernel[grid](x_adv, grad, x, partials, m, num_blocks, BLOCK=block, num_warps=warps)
    _l2_apply_kernel[grid](
        x_adv,
        grad,
        x,
        eps,
        alpha,
        partials,
        out,
        m,
        num_blocks,
        BLOCK=block,
        BLOCKS_P2=blocks_p2,
        num_warps=warps,
    )


_l2_step_op = launcher_op("l2_step", l2_step_triton, mutates=("out",))


def l2_step_fp32(x_adv: Tensor, grad: Tensor, x: Tensor, eps: Tensor, alpha: Tensor) -> Tensor:
    """The formula in float32, norms computed directly; also the inner step of APGD's reference.
    eps, alpha: ready float32 (N,) vectors (:func:`fastrft.kernels.per_sample`)."""
    eps, alpha = view_per_sample(eps, x_adv), view_per_sample(alpha, x_adv)
    xf, g = x.float(), grad.float()
    g_norm = view_per_sample(g.flatten(1).norm(dim=1), g)
    d = x_adv.float() + alpha * g / (g_norm + TINY) - xf
    d_norm = view_per_sample(d.flatten(1).norm(dim=1), d)
    return (xf + d * torch.minimum(eps, d_norm) / (d_norm + TINY)).clamp(0.0, 1.0)


def l2_step_reference(x_adv: Tensor, grad: Tensor, x: Tensor, eps: Tensor, alpha: Tensor) -> Tensor:
    """Plain torch, the formula literally in float32 (norms by torch, not by the expansion);
    eps, alpha: ready float32 (N,) vectors."""
    return l2_step_fp32(x_adv, grad, x, eps, alpha).to(x_adv.dtype)


def l2_step(
    x_adv: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: float | Tensor,
    alpha: float | Tensor,
    *,
    out: Tensor | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """One l_2 step from ``x_adv`` along ``grad / ||grad||``, projected onto the ball and the box.

    ``eps`` and ``alpha`` are floats or per-sample tensors; a ready float32 (N,) vector on
    x_adv's device is used as it is (:func:`fastrft.kernels.per_sample`). ``out`` may be
    ``x_adv`` itself (an in-place update); without it a new tensor in ``x_adv``'s layout is
    returned.
    """
    return run_step(_l2_step_op, l2_step_reference, x_adv, grad, x, eps, alpha, out, backend)
