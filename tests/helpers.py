"""Assertions that say where and by how much two tensors differ, and shared test inputs."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import torch
from torch import Tensor

# (dtype, atol, rtol) for element-wise results computed in float32 and stored in dtype
DTYPES = [
    (torch.float32, 0.0, 0.0),
    (torch.bfloat16, 2**-8, 0.0),
    (torch.float16, 2**-11, 0.0),
]


def cast_tolerance(dtype: torch.dtype, device) -> float:
    """0 (exact), except that Triton's CPU interpreter rounds float32 -> bfloat16 by truncation
    where the GPU rounds to nearest even: one bfloat16 step apart at most."""
    interp = torch.device(device).type == "cpu"
    return 2**-8 if dtype == torch.bfloat16 and interp else 0.0


# realistic, near power of two, prime and degenerate shapes (N, C, H, W)
SHAPES = [(1, 3, 7, 5), (2, 3, 32, 32), (3, 1, 17, 19), (5, 3, 31, 29), (4, 2, 1, 1)]

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def assert_close(
    actual: Tensor, expected: Tensor, atol: float = 0.0, rtol: float = 0.0, what: str = "tensor"
) -> None:
    """Like torch.testing.assert_close, but reports the worst element and how many differ."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.double(), expected.double()
    assert not torch.isnan(a).any(), f"{what}: {int(torch.isnan(a).sum())} NaN entries"
    err = (a - e).abs()
    bad = err > atol + rtol * e.abs()
    if bad.any():
        i = int(torch.argmax(err.flatten()))
        idx = tuple(int(k) for k in torch.unravel_index(torch.tensor(i), a.shape))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {a.numel()} entries differ beyond atol={atol}, "
            f"rtol={rtol}; worst at {idx}: got {a.flatten()[i].item():.8g}, expected "
            f"{e.flatten()[i].item():.8g} (|diff| {err.max().item():.3g})"
        )


def images(shape, dtype=torch.float32, layout=torch.contiguous_format, device="cpu") -> Tensor:
    """Random pixels in [0, 1], with exact 0s and 1s mixed in so the box clamp is exercised."""
    x = torch.rand(shape, device=device)
    x = torch.where(torch.rand(shape, device=device) < 0.05, x.round(), x)
    return x.to(dtype).contiguous(memory_format=layout)


def eps_per_sample(n: int, device="cpu") -> Tensor:
    """Per-sample budgets, one of them zero (the ball collapses onto x)."""
    eps = torch.rand(n, device=device) * 16 / 255
    eps[0] = 0.0
    return eps


def near_ball(x: Tensor, eps: Tensor) -> Tensor:
    """Points around x: a third inside, a third exactly on the l_inf sphere, a third outside."""
    e = eps.view(-1, *([1] * (x.dim() - 1))).float()
    xf = x.float()
    pick = torch.randint(0, 3, x.shape, device=x.device)
    inside = xf + e * (2 * torch.rand_like(xf) - 1)
    edge = xf + e * torch.where(torch.rand_like(xf) < 0.5, -1.0, 1.0)
    outside = xf + 3 * e * (2 * torch.rand_like(xf) - 1)
    v = torch.where(pick == 0, inside, torch.where(pick == 1, edge, outside))
    return v.clamp(0, 1).to(x.dtype).contiguous(memory_format=_layout(x))


def _layout(t: Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and not t.is_contiguous()
        else torch.contiguous_format
    )


def l2_eps_per_sample(shape, device="cpu") -> Tensor:
    """Per-sample l_2 budgets on the scale of CIFAR's 0.5 (eps_per_sample's l_inf budgets
    times sqrt(C*H*W) / 4), sample 0 at zero unless it is alone (it would only test the
    collapse onto x)."""
    n, m = shape[0], torch.Size(shape[1:]).numel()
    eps = eps_per_sample(n, device) * m**0.5 / 4
    if n == 1:
        eps.fill_(0.5)
    return eps


def near_l2_ball(x: Tensor, eps: Tensor) -> Tensor:
    """Points around x: sample i lies on the l_2 sphere (i % 3 == 0), halfway inside (1), or
    at three times the radius (2). Not clamped to the box, so edge points stay on the sphere
    (up to rounding)."""
    n, ones = x.shape[0], [1] * (x.dim() - 1)
    u = torch.randn(x.shape, device=x.device)
    u = u / u.flatten(1).norm(dim=1).view(-1, *ones)
    radius = torch.tensor([1.0, 0.5, 3.0], device=x.device)[torch.arange(n, device=x.device) % 3]
    return torch.empty_like(x).copy_(x.float() + (eps * radius).view(-1, *ones) * u)


def assert_same_trajectory(a: Tensor, b: Tensor, norm: str, what: str = "attack") -> None:
    """Two runs of an attack, on the fused kernels and on the references, from the same start.

    l_inf kernels do the references' arithmetic, so the runs agree to rounding. l_2 kernels
    sum norms in another order; a last-bit difference can flip one of APGD's per-sample
    decisions, after which that sample takes another path: there, nearly all samples must
    agree (seen on an H100: 1 sample in 256 diverged).
    """
    if norm == "linf":
        assert_close(a, b, atol=1e-5, what=what)
        return
    worst = (a.double() - b.double()).flatten(1).abs().amax(1)
    agree = (worst <= 1e-4).double().mean().item()
    assert agree >= 0.95, f"{what}: {agree:.1%} of samples agree within 1e-4, want >= 95%"


def expected_lr(base: float, step: int, total: int, warmup: int, min_ratio: float) -> float:
    """fastrft.optim.cosine_with_warmup written out: the lr after ``step`` optimizer steps,
    linear warm-up from 0, then a half cosine to min_ratio * base, flat after ``total``."""
    if step < warmup:
        return base * step / warmup
    if step >= total:
        return base * min_ratio
    t = (step - warmup) / (total - warmup)
    return base * (min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2)


def free_port() -> int:
    """A TCP port no one listens on now: a fixed one collides with a suite running beside."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    *args: str, nproc: int = 2, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run`` with ``nproc`` local processes (gloo on a CPU) on a
    free port, killed after ``timeout`` seconds (a safety net, never a measure of success);
    ``env`` is added to this process's environment."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
