"""One l_inf attack step, fused: sign step, projection onto the ball, clamp to the box.

    x_new = clamp(clamp(x_adv + alpha_n * sign(g), x - eps_n, x + eps_n), 0, 1)

with a budget eps_n and step alpha_n per sample. One read of x_adv, g and x, one write.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import Backend, flat_launch, launcher_op, on_tensors_device, run_step, view_per_sample

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


if triton is not None:

    @triton.jit
    def _linf_step_kernel(
        xadv_ptr,
        grad_ptr,
        x_ptr,
        eps_ptr,
        alpha_ptr,
        out_ptr,
        per_sample_numel,
        BLOCK: tl.constexpr,
    ):
        sample = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < per_sample_numel
        idx = sample * per_sample_numel + offs
        eps = tl.load(eps_ptr + sample)
        alpha = tl.load(alpha_ptr + sample)
        xa = tl.load(xadv_ptr + idx, mask=mask).to(tl.float32)
        g = tl.load(grad_ptr + idx, mask=mask).to(tl.float32)
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        v = xa + tl.where(g > 0, alpha, tl.where(g < 0, -alpha, 0.0))
        v = tl.minimum(tl.maximum(v, x - eps), x + eps)
        v = tl.minimum(tl.maximum(v, 0.0), 1.0)
        tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


@on_tensors_device
def linf_step_triton(
    x_adv: Tensor, grad: Tensor, x: Tensor, eps: Tensor, alpha: Tensor, out: Tensor
) -> None:
    """Launch the kernel. All image tensors share shape and strides; eps, alpha: float32 (N,)."""
    n = x.shape[0]
    if n == 0 or x.numel() == 0:
        return
    m = x.numel() // n
    block, warps = flat_launch(m)
    grid = (n, triton.cdiv(m, block))
    _linf_step_kernel[grid](x_adv, grad, x, eps, alpha, out, m, BLOCK=block, num_warps=warps)


_linf_step_op = launcher_op("linf_step", linf_step_triton, mutates=("out",))


def linf_step_reference(
    x_adv: Tensor, grad: Tensor, x: Tensor, eps: Tensor, alpha: Tensor
) -> Tensor:
    """Plain torch, the same float32 arithmetic as the kernel; eps, alpha: ready float32 (N,)
    vectors (:func:`fastrft.kernels.per_sample`), not converted here."""
    eps, alpha = view_per_sample(eps, x), view_per_sample(alpha, x)
    xf = x.float()
    v = x_adv.float() + alpha * grad.float().sign()
    v = torch.minimum(torch.maximum(v, xf - eps), xf + eps)
    return v.clamp(0.0, 1.0).to(x_adv.dtype)


def linf_step(
    x_adv: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: float | Tensor,
    alpha: float | Tensor,
    *,
    out: Tensor | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """One l_inf step from ``x_adv`` along ``sign(grad)``, projected onto the ball and the box.

    ``eps`` and ``alpha`` are floats or per-sample tensors; a ready float32 (N,) vector on
    x_adv's device is used as it is (:func:`fastrft.kernels.per_sample`). ``out`` may be
    ``x_adv`` itself (an in-place update); without it a new tensor in ``x_adv``'s layout is
    returned.
    """
    return run_step(_linf_step_op, linf_step_reference, x_adv, grad, x, eps, alpha, out, backend)
