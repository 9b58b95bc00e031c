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
default generator) replays fresh noise. Each sample's draw is keyed by its id (``ids[n]``, by
default its position n), never by where it sits in the launch, so with ids the start of an
image is the same in any batch, at any position, on any rank of a sharded evaluation. The
Philox counters are int64: ``(id * blocks_per_sample + block) * BLOCK / 4 + lane`` for the
elements, each counter giving four numbers (``tl.rand4x`` / ``tl.randn4x``) to four elements of
its block, a quarter of the Philox work of one draw per element; the l2 radius of a sample
uses ``2^62 + id``. All are unique while ``0 <= id`` and ``(id + 1) * max(d, 8) <= 2^63`` (d
elements per sample: ids below 6e13 for 3x224x224 images), which ids are not checked against
(that would be a host sync). The counters depend on the block size, so the same seed gives
the same output for the same per-sample shape and layout, not across shapes or layouts.
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
    def _sample_key(ids_ptr, sample, HAS_IDS: tl.constexpr):
        """What keys the sample's counters: its id, or without ids its position (no ids
        tensor is allocated then: the training hot path runs this inside CUDA graphs)."""
        key = sample
        if HAS_IDS:
            key = tl.load(ids_ptr + sample)
        return key

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
        ids_ptr,
        out_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
        HAS_IDS: tl.constexpr,
    ):
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        lanes = tl.arange(0, QUARTER)
        key = _sample_key(ids_ptr, sample, HAS_IDS)
        # counter c feeds elements block*BLOCK + k*QUARTER + lane, k = 0..3: each quarter
        # is a contiguous run, so the loads stay coalesced
        counter = (key * blocks_per_sample + block) * QUARTER + lanes
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
        ids_ptr,
        partial_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
        HAS_IDS: tl.constexpr,
    ):
        # pass 1: ||v||^2 of this block's normals, one float32 partial per (sample, block);
        # no atomics, so the sum in pass 2 is the same on every run
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        lanes = tl.arange(0, QUARTER)
        key = _sample_key(ids_ptr, sample, HAS_IDS)
        counter = (key * blocks_per_sample + block) * QUARTER + lanes
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
        ids_ptr,
        partial_ptr,
        out_ptr,
        per_sample_numel,
        blocks_per_sample,
        BLOCK: tl.constexpr,
        PARTIALS: tl.constexpr,
        HAS_IDS: tl.constexpr,
    ):
        QUARTER: tl.constexpr = BLOCK // 4
        sample = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        key = _sample_key(ids_ptr, sample, HAS_IDS)
        seed = tl.load(seed_ptr)
        # every program of a sample sums the same partials in the same order: same norm
        p = tl.arange(0, PARTIALS)
        partials = tl.load(
            partial_ptr + sample * blocks_per_sample + p, mask=p < blocks_per_sample, other=0.0
        )
        sumsq = tl.maximum(tl.sum(partials, axis=0), 1e-30)
        # the radius draw: the same counter in every program of the sample, and one that no
        # element of any sample uses (theirs stay below 2^62 within the module's bound on
        # ids) nor depends on the batch size, so a sample's radius is its own in any batch
        RADIUS_COUNTERS: tl.constexpr = 1 << 62
        u = tl.rand(seed, key + RADIUS_COUNTERS)
        r = tl.exp(tl.log(u) / per_sample_numel)  # u^(1/d); u = 0 gives r = 0
        scale = tl.load(eps_ptr + sample) * r / tl.sqrt(sumsq)
        lanes = tl.arange(0, QUARTER)
        counter = (key * blocks_per_sample + block) * QUARTER + lanes
        v0, v1, v2, v3 = tl.randn4x(seed, counter)
        base = sample * per_sample_numel
        offs = block * BLOCK + lanes
        _l2_quarter(x_ptr, out_ptr, base, offs, per_sample_numel, scale, v0)
        _l2_quarter(x_ptr, out_ptr, base, offs + QUARTER, per_sample_numel, scale, v1)
        _l2_quarter(x_ptr, out_ptr, base, offs + 2 * QUARTER, per_sample_numel, scale, v2)
        _l2_quarter(x_ptr, out_ptr, base, offs + 3 * QUARTER, per_sample_numel, scale, v3)


@on_tensors_device
def random_start_triton(
    x: Tensor, eps: Tensor, seed: Tensor, ids: Tensor | None, out: Tensor, norm: str
) -> None:
    """Launch the kernel(s). x, out: same shape and strides, batch-major; eps: float32 (N,);
    seed: int64 (1,) and ids: None or int64 (N,), on x's device."""
    n = x.shape[0]
    if n == 0 or x.numel() == 0:
        return
    m = x.numel() // n
    block, warps = flat_launch(m)
    if norm == "linf":
        warps = 4  # Philox needs registers: 4 warps beat 8 on an H100 (tune-launch results)
    blocks = triton.cdiv(m, block)
    grid = (n, blocks)
    keyed = ids is not None
    if norm == "linf":
        _linf_random_start_kernel[grid](
            x, eps, seed, ids, out, m, blocks, BLOCK=block, HAS_IDS=keyed, num_warps=warps
        )
        return
    partial = torch.empty((n, blocks), dtype=torch.float32, device=x.device)
    _l2_sumsq_kernel[grid](
        seed, ids, partial, m, blocks, BLOCK=block, HAS_IDS=keyed, num_warps=warps
    )
    _l2_apply_kernel[grid](
        x,
        eps,
        seed,
        ids,
        partial,
        out,
        m,
        blocks,
        BLOCK=block,
        PARTIALS=max(16, triton.next_power_of_2(blocks)),  # no 1-wide arange on any backend
        HAS_IDS=keyed,
        num_warps=warps,
    )


_random_start_op = launcher_op("random_start", random_start_triton, mutates=("out",))


def random_start_reference(
    x: Tensor,
    eps: Tensor,
    norm: str = "linf",
    seed: int | Tensor | None = None,
    ids: Tensor | None = None,
) -> Tensor:
    """Plain torch, the same float32 formula as the kernels; eps: a ready float32 (N,) vector
    (:func:`fastrft.kernels.per_sample`).

    The noise comes from torch's generators, not Triton's Philox streams, so for the same seed
    the reference and the kernel draw different (equally distributed) points. Without ``ids``:
    ``seed=None`` draws from torch's default generator of x's device; an int or a one-element
    tensor (read with ``.item()``, a host sync) seeds a private ``torch.Generator`` that draws
    the whole batch. With ``ids`` (see :func:`random_start`) each distinct id draws its noise
    from its own generator, seeded by :func:`_generator_seed` from (seed, id), so a sample's
    start does not depend on its batch; ``seed=None`` then takes one seed from the default
    generator, as the kernel path does.
    """
    check_norm(norm)
    xf = x.float()
    e = view_per_sample(eps, x)
    if ids is None:
        noise, radius_draw = _batch_draws(xf, norm, seed)
    else:
        noise, radius_draw = _keyed_draws(xf, norm, seed, _ids_tensor(ids, x))
    if norm == "linf":
        v = xf + e * (2.0 * noise - 1.0)
    else:
        d = max(x.numel() // max(x.shape[0], 1), 1)
        sumsq = noise.square().flatten(1).sum(1).clamp_min(1e-30)
        r = radius_draw.pow(1.0 / d)
        v = xf + view_per_sample(eps * r / sumsq.sqrt(), x) * noise
    return v.clamp(0.0, 1.0).to(x.dtype)


def _batch_draws(xf: Tensor, norm: str, seed: int | Tensor | None) -> tuple[Tensor, Tensor]:
    """(noise like xf, a radius uniform per sample), from one generator for the whole batch."""
    gen = None
    if seed is not None:
        gen = torch.Generator(device=xf.device)
        gen.manual_seed(int(seed.item()) if isinstance(seed, Tensor) else int(seed))
    return _draw(torch.empty_like(xf), xf.shape[0], norm, gen)


def _keyed_draws(
    xf: Tensor, norm: str, seed: int | Tensor | None, ids: Tensor
) -> tuple[Tensor, Tensor]:
    """(noise like xf, a radius uniform per sample), drawn once per distinct id from the id's
    own generator and gathered."""
    base = int(_seed_tensor(seed, xf.device).item())
    keys, where = torch.unique(ids, return_inverse=True)
    noise, radius = [], []
    for key in keys.tolist():
        gen = torch.Generator(device=xf.device)
        gen.manual_seed(_generator_seed(base, key))
        v, u = _draw(xf.new_empty(xf.shape[1:]), 1, norm, gen)
        noise.append(v)
        radius.append(u)
    return torch.stack(noise)[where], torch.cat(radius)[where]


def _draw(
    noise: Tensor, samples: int, norm: str, gen: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``noise`` filled with uniforms (linf) or normals (l2), then ``samples`` radius uniforms
    (l2; none for linf), in that order from ``gen``."""
    if norm == "linf":
        return noise.uniform_(0.0, 1.0, generator=gen), noise.new_empty(samples)
    noise.normal_(generator=gen)
    return noise, torch.rand(samples, generator=gen, device=noise.device)


# 2^64 / golden ratio, odd: id -> id * _WEYL is a bijection of the integers mod 2^64 and mod 2^32
_WEYL = 0x9E3779B97F4A7C15
_MASK64 = 2**64 - 1


def _generator_seed(seed: int, key: int) -> int:
    """A torch.Generator seed for sample id ``key`` under ``seed``: splitmix64(seed) + key *
    an odd constant, mod 2^64. For one seed it is injective in the id mod 2^64, and its low 32
    bits (all that a CPU generator reads) injective in the id mod 2^32, so distinct ids within
    2^32 of each other never share a stream; another seed shifts every id's generator seed."""
    return (_splitmix64(seed) + key * _WEYL) & _MASK64


def _splitmix64(z: int) -> int:
    """Steele et al.'s splitmix64 output function: a bijection of 64-bit integers whose output
    bits all depend on every input bit."""
    z = (z + _WEYL) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def random_start(
    x: Tensor,
    eps: float | Tensor,
    norm: Norm = "linf",
    *,
    seed: int | Tensor | None = None,
    ids: Tensor | None = None,
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
    the torch reference draw different points for the same seed.

    ``ids``: an integer tensor of N sample ids (any integer dtype, on any device). Sample n's
    start is then a function of (seed, ids[n], eps[n], x[n]) and the per-sample shape alone,
    the same in any batch, at any position: what a sharded evaluation needs for curves that do
    not depend on the number of ranks or the batch size. Equal ids draw the same unit noise
    (one image repeated at several budgets gets the same draw, scaled by each budget). None
    keys each sample by its position in the batch. The kernels need ``0 <= ids`` and
    ``(ids + 1) * max(d, 8) <= 2^63`` for d elements per sample (see the module's notes).

    ``out`` may be ``x`` itself; without it a new tensor in ``x``'s layout is returned.
    """
    check_norm(norm)
    eps_v = per_sample(eps, x.shape[0], x.device)
    ids_v = None if ids is None else _ids_tensor(ids, x)
    if out is None:
        out = torch.empty_like(x)
    else:
        check_batch("out", out, x)
        if out.dtype != x.dtype:
            raise ValueError(f"out has dtype {out.dtype}, expected {x.dtype}")
    if not use_triton(x, backend):
        out.copy_(random_start_reference(x, eps_v, norm, seed, ids_v))
        return out
    seed_t = _seed_tensor(seed, x.device)
    # the kernels walk flat storage one sample at a time: x must be batch-major and out must
    # share its strides, else go through a temporary in x's layout
    xk = x if batch_major(x) else x.contiguous()
    if out.stride() == xk.stride():
        _random_start_op(xk, eps_v, seed_t, ids_v, out, norm)
    else:
        tmp = torch.empty_like(xk)
        _random_start_op(xk, eps_v, seed_t, ids_v, tmp, norm)
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


def _ids_tensor(ids: Tensor, x: Tensor) -> Tensor:
    """The sample ids as a contiguous int64 (N,) tensor on x's device; their values are not
    checked (that would sync the host)."""
    n = x.shape[0]
    if not isinstance(ids, Tensor):
        raise ValueError(
            f"ids must be an integer tensor of shape ({n},), one id per sample, got "
            f"{type(ids).__name__}"
        )
    integer = not (ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool)
    if ids.shape != (n,) or not integer:
        raise ValueError(
            f"ids must be an integer tensor of shape ({n},), one id per sample, got "
            f"{ids.dtype} with shape {tuple(ids.shape)}"
        )
    return ids.to(device=x.device, dtype=torch.int64).contiguous()
