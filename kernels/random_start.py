"""The random start of PGD, FGSM and APGD: a uniform draw inside the ball, clamped to the box.

    linf: x0 = clamp(x + eps_n * (2u - 1), 0, 1),               u ~ U[0, 1) per element
    l2:   x0 = clamp(x + eps_n * r_n * v / ||v||_2, 0, 1),      v ~ N(0, I) per element,
                                                                 r_n = u_n^(1/d), u_n ~ U[0, 1)

with a budget eps_n per sample and d elements per sample (r_n = u_n^(1/d) makes the point
uniform in the l2 ball, not just on its sphere). One read of x and one write for l_inf; l2
makes a first pass that only draws the normals and reduces ||v||^2 per sample, then regenerates
the same normals from the same (seed, counter) in the second pass instead of storing them.

Seeding: the kernels read the seed from a one-element int64 device tensor, never a Python int,
so a CUDA graph that re-draws that tensor (``seed=None`` does, with ``torch.randint`` on the
default generator) replays fresh noise. The Philox counters are int64 and unique per element
over the whole batch: ``(sample * blocks_per_sample + block) * BLOCK / 4 + lane``, each counter
giving four numbers (``tl.rand4x`` / ``tl.randn4x``) to four elements of its block, a quarter of
the Philox work of one draw per element. The counters depend on the block size, so the same seed
gives the same output for the same tensor shape, not across shapes or between layouts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import (
    Backend,
    Norm,
    batch_major,
    check_batch,
    check_norm,
    flat_launch,
    launcher_op,
    on_tensors_device,
    per_sample,
    use_triton,
    view_per_sample,
)

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None

# seeds drawn for seed=None: any int64 >= 0 is a valid Philox key
_SEED_HIGH = 2**63 - 1


if triton is not None:

    @triton.jit
    def _linf_quarter(x_ptr, out_ptr, sample_base, offs, per_sample_numel, eps, u):
        mask = offs < per_sample_numel
        idx = sample_base + offs
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        v = x + eps * (2.0 * u - 1.0)
        v = tl.minimum(tl.maximum(v, 0.0), 1.0)
        tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _linf_random_start_kernel(
        x_ptr,
        eps_ptr,
        seed_ptr,
        out_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
    ):
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        lanes = tl.arange(0, QUARTER)
        # counter c feeds elements block*BLOCK + k*QUARTER + lane, k = 0..3: each quarter
        # is a contiguous run, so the loads stay coalesced
        counter = (sample * blocks_per_sample + block) * QUARTER + lanes
        u0, u1, u2, u3 = tl.rand4x(tl.load(seed_ptr), counter)
        eps = tl.load(eps_ptr + sample)
        base = sample * per_sample_numel
        offs = block * BLOCK + lanes
        _linf_quarter(x_ptr, out_ptr, base, offs, per_sample_numel, eps, u0)
        _linf_quarter(x_ptr, out_ptr, base, offs + QUARTER, per_sample_numel, eps, u1)
        _linf_quarter(x_ptr, out_ptr, base, offs + 2 * QUARTER, per_sample_numel, eps, u2)
        _linf_quarter(x_ptr, out_ptr, base, offs + 3 * QUARTER, per_sample_numel, eps, u3)

    @triton.jit
    def _l2_sumsq_kernel(
        seed_ptr,
        partial_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
    ):
        # pass 1: ||v||^2 of this block's normals, one float32 partial per (sample, block);
        # no atomics, so the sum in pass 2 is the same on every run
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        lanes = tl.arange(0, QUARTER)
        counter = (sample * blocks_per_sample + block) * QUARTER + lanes
        v0, v1, v2, v3 = tl.randn4x(tl.load(seed_ptr), counter)
        offs = block * BLOCK + lanes
        # the tail's normals are drawn but must not count
        acc = tl.where(offs < per_sample_numel, v0 * v0, 0.0)
        acc += tl.where(offs + QUARTER < per_sample_numel, v1 * v1, 0.0)
        acc += tl.where(offs + 2 * QUARTER < per_sample_numel, v2 * v2, 0.0)
        acc += tl.where(offs + 3 * QUARTER < per_sample_numel, v3 * v3, 0.0)
        tl.store(partial_ptr + sample * blocks_per_sample + block, tl.sum(acc, axis=0))

    @triton.jit
    def _l2_quarter(x_ptr, out_ptr, sample_base, offs, per_sample_numel, scale, v):
        mask = offs < per_sample_numel
        idx = sample_base + offs
        x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
        y = tl.minimum(tl.maximum(x + scale * v, 0.0), 1.0)
        tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _l2_apply_kernel(
        x_ptr,
        eps_ptr,
        seed_ptr,
        partial_ptr,
        out_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
        PARTIALS: tl.constexpr,
    ):
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        seed = tl.load(seed_ptr)
        # every program of a sample sums the same partials in the same order: same norm
        p = tl.arange(0, PARTIALS)
        partials = tl.load(
            partial_ptr + sample * blocks_per_sample + p, mask=p < blocks_per_sample, other=0.0
        )
        sumsq = tl.maximum(tl.sum(partials, axis=0), 1e-30)
        # the radius draw uses counters past the last element's: unique, and the same in
        # every program of the sample
        radius_counter = tl.num_programs(0).to(tl.int64) * blocks_per_sample * QUARTER + sample
        u = tl.rand(seed, radius_counter)
        r = tl.exp(tl.log(u) / per_sample_numel)  # u^(1/d); u = 0 gives r = 0
        scale = tl.load(eps_ptr + sample) * r / tl.sqrt(sumsq)
        lanes = tl.arange(0, QUARTER)
        counter = (sample * blocks_per_sample + block) * QUARTER + lanes
        v0, v1, v2, v3 = tl.randn4x(seed, counter)
        base = sample * per_sample_numel
        offs = block * BLOCK + lanes
        _l2_quarter(x_ptr, out_ptr, base, offs, per_sample_numel, scale, v0)
        _l2_quarter(x_ptr, out_ptr, base, offs + QUARTER, per_sample_numel, scale, v1)
        _l2_quarter(x_ptr, out_ptr, base, offs + 2 * QUARTER, per_sample_numel, scale, v2)
        _l2_quarter(x_ptr, out_ptr, base, offs + 3 * QUARTER, per_sample_numel, scale, v3)


@on_tensors_device
def random_start_triton(x: Tensor, eps: Tensor, seed: Tensor, out: Tensor, norm: str) -> None:
    """Launch the kernel(s). x, out: same shape and strides, batch-major; eps: float32 (N,);
    seed: int64 (1,) on x's device."""
    n = x.shape[0]
    if n == 0 or x.numel() == 0:
        return
    m = x.numel() // n
    block, warps = flat_launch(m)
    if norm == "linf":
        warps = 4  # Philox needs registers: 4 warps beat 8 on an H100 (tune-launch results)
    blocks = triton.cdiv(m, block)
    grid = (n, blocks)
    if norm == "linf":
        _linf_random_start_kernel[grid](x, eps, seed, out, m, blocks, BLOCK=block, num_warps=warps)
        return
    partial = torch.empty((n, blocks), dtype=torch.float32, device=x.device)
    _l2_sumsq_kernel[grid](seed, partial, m, blocks, BLOCK=block, num_warps=warps)
    _l2_apply_kernel[grid](
        x,
        eps,
        seed,
        partial,
        out,
        m,
        blocks,
        BLOCK=block,
        PARTIALS=max(16, triton.next_power_of_2(blocks)),  # no 1-wide arange on any backend
        num_warps=warps,
    )


_random_start_op = launcher_op("random_start", random_start_triton, mutates=("out",))


def random_start_reference(
    x: Tensor, eps: Tensor, norm: str = "linf", seed: int | Tensor | None = None
) -> Tensor:
    """Plain torch, the same float32 formula as the kernels; eps: a ready float32 (N,) vector
    (:func:`fastrft.kernels.per_sample`).

    The noise comes from torch's generators, not Triton's Philox streams, so for the same seed
    the reference and the kernel draw different (equally distributed) points. ``seed=None``
    draws from torch's default generator of x's device; an int or a one-element tensor (read
    with ``.item()``, a host sync) seeds a private ``torch.Generator``.
    """
    check_norm(norm)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=x.device)
        gen.manual_seed(int(seed.item()) if isinstance(seed, Tensor) else int(seed))
    xf = x.float()
    e = view_per_sample(eps, x)
    if norm == "linf":
        u = torch.empty_like(xf).uniform_(0.0, 1.0, generator=gen)
        v = xf + e * (2.0 * u - 1.0)
    else:
        n = x.shape[0]
        d = max(x.numel() // max(n, 1), 1)
        g = torch.empty_like(xf).normal_(generator=gen)
        sumsq = g.square().flatten(1).sum(1).clamp_min(1e-30)
        r = torch.rand(n, generator=gen, device=x.device).pow(1.0 / d)
        v = xf + view_per_sample(eps * r / sumsq.sqrt(), x) * g
    return v.clamp(0.0, 1.0).to(x.dtype)


def random_start(
    x: Tensor,
    eps: float | Tensor,
    norm: Norm = "linf",
    *,
    seed: int | Tensor | None = None,
    out: Tensor | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """A point drawn uniformly from the ``norm`` ball of radius ``eps`` around ``x``, clamped to
    [0, 1].

    ``eps`` is a float or a per-sample tensor (a ready float32 (N,) vector on x's device is
    used as it is, :func:`fastrft.kernels.per_sample`). ``seed``: None draws a fresh seed
    tensor from torch's default generator on x's device (so ``torch.manual_seed`` makes runs
    reproducible and a captured CUDA graph draws new noise on each replay); an int or a
    one-element integer tensor fixes the noise (an int is written into a device tensor by a
    fill, no host sync; for graph capture prefer a tensor you update in place). The kernel and
    the torch reference draw different points for the same seed. ``out`` may be ``x`` itself;
    without it a new tensor in ``x``'s layout is returned.
    """
    check_norm(norm)
    eps_v = per_sample(eps, x.shape[0], x.device)
    if out is None:
        out = torch.empty_like(x)
    else:
        check_batch("out", out, x)
        if out.dtype != x.dtype:
            raise ValueError(f"out has dtype {out.dtype}, expected {x.dtype}")
    if not use_triton(x, backend):
        out.copy_(random_start_reference(x, eps_v, norm, seed))
        return out
    seed_t = _seed_tensor(seed, x.device)
    # the kernels walk flat storage one sample at a time: x must be batch-major and out must
    # share its strides, else go through a temporary in x's layout
    xk = x if batch_major(x) else x.contiguous()
    if out.stride() == xk.stride():
        _random_start_op(xk, eps_v, seed_t, out, norm)
    else:
        tmp = torch.empty_like(xk)
        _random_start_op(xk, eps_v, seed_t, tmp, norm)
        out.copy_(tmp)
    return out


def _seed_tensor(seed: int | Tensor | None, device: torch.device) -> Tensor:
    """The seed as a one-element int64 tensor on ``device``."""
    if seed is None:
        return torch.randint(0, _SEED_HIGH, (1,), dtype=torch.int64, device=device)
    if isinstance(seed, Tensor):
        if seed.numel() != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex:
            raise ValueError(
                f"seed must be an int or a one-element integer tensor, got {seed.dtype} "
                f"with shape {tuple(seed.shape)}"
            )
        return seed.reshape(1).to(device=device, dtype=torch.int64)
    return torch.full((1,), int(seed), dtype=torch.int64, device=device)
