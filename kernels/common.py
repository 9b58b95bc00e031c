"""What the kernels share, and what their callers use with them: backend choice, norm names,
per-sample budgets, layouts, launch sizes, and the custom-op registration of each launcher.

Every kernel works on the flat storage of batched tensors whose batch dimension is
outermost in memory: contiguous NCHW and channels_last NHWC both qualify, so one
sample is one contiguous run of ``numel // N`` elements and a program never needs
to know the layout. Tensors passed together must share their strides.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Literal, TypeVar

import torch
from torch import Tensor

try:  # triton is optional: absent on macOS and Windows, and the torch references still run
    import triton
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")
Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")

MAX_BLOCK = 4096


def interpreting() -> bool:
    """True when Triton runs kernels on CPU tensors through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(t: Tensor, backend: Backend) -> bool:
    """Whether a call on ``t`` runs the Triton kernel (True) or the torch reference (False).

    "auto" picks the kernel for CUDA tensors only; "triton" demands it (on CPU tensors
    this needs TRITON_INTERPRET=1); "torch" always runs the reference.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    if backend == "auto":
        return triton is not None and t.is_cuda
    if triton is None:
        raise RuntimeError("backend='triton' needs the triton package: pip install triton")
    if not t.is_cuda and not interpreting():
        raise RuntimeError(
            "backend='triton' on a CPU tensor needs TRITON_INTERPRET=1 set before triton "
            "is imported; use backend='auto' to fall back to the torch reference"
        )
    return True


def check_norm(norm: str) -> None:
    """Raise unless ``norm`` is one the kernels implement (aliases are the attacks' business:
    fastrft.attacks.core.canonical_norm)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


Launcher = TypeVar("Launcher", bound=Callable[..., None])


def on_tensors_device(launch: Launcher) -> Launcher:
    """A launcher run with its first tensor's GPU as the current device: Triton launches on
    the current device, so tensors on another GPU (a model on cuda:1 while cuda:0 is current)
    would otherwise be handed to a kernel on the wrong one. No switch in the usual case."""

    @functools.wraps(launch)
    def launch_there(first: Tensor, *args, **kwargs) -> None:
        if first.is_cuda and first.device.index != torch.cuda.current_device():
            with torch.cuda.device(first.device):
                return launch(first, *args, **kwargs)
        return launch(first, *args, **kwargs)

    return launch_there  # type: ignore[return-value]


def per_sample(value: float | Tensor, n: int, device: torch.device) -> Tensor:
    """A budget or step size as the contiguous float32 vector of n values the kernels read:
    the one place a float (or a one-value tensor) becomes per-sample.

    A vector that is already that, on ``device``, comes back as itself: callers convert once
    (fastrft.attacks.core.prepare, or the engine before a CUDA graph) and every later call on
    the way to a kernel is a shape check. A tensor of n values in another shape, dtype or on
    another device is reshaped and copied; any other size is a ValueError.
    """
    if not isinstance(value, Tensor):
        return torch.full((n,), float(value), dtype=torch.float32, device=device)
    if value.shape == (n,) and value.dtype == torch.float32 and value.device == device:
        return value if value.is_contiguous() else value.contiguous()
    if value.numel() == 1:
        return value.reshape(1).to(device=device, dtype=torch.float32).expand(n).contiguous()
    if value.numel() != n:
        raise ValueError(
            f"expected a scalar or {n} per-sample values, got shape {tuple(value.shape)}"
        )
    return value.reshape(n).to(device=device, dtype=torch.float32).contiguous()


def view_per_sample(v: Tensor, like: Tensor) -> Tensor:
    """A length-N vector viewed as (N, 1, 1, ...) to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def batch_major(t: Tensor) -> bool:
    """True if ``t`` is dense with its batch dimension outermost (NCHW or NHWC, say)."""
    if t.dim() == 0:
        return False
    n = t.shape[0]
    return _non_overlapping_and_dense(t) and (n <= 1 or t.stride(0) == t.numel() // n)


def _non_overlapping_and_dense(t: Tensor) -> bool:
    """Whether t's elements fill its storage span exactly once, in some order of dimensions.

    Tensor has no public method for this in torch 2.15, so: sorted by stride, the dimensions
    of size > 1 must have strides 1, s0, s0*s1, ...
    """
    dims = sorted((st, s) for s, st in zip(t.shape, t.stride(), strict=True) if s != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def like_layout(t: Tensor, ref: Tensor) -> Tensor:
    """``t`` with the strides of ``ref`` (a copy only when they differ)."""
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref, dtype=t.dtype).copy_(t)


def check_batch(name: str, t: Tensor, ref: Tensor) -> None:
    """Raise unless ``t`` can be read element for element alongside ``ref``."""
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device}, expected {ref.device}")


def flat_launch(per_sample_numel: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for a kernel that walks each sample in blocks."""
    block = min(MAX_BLOCK, triton.next_power_of_2(max(per_sample_numel, 16)))
    return block, (8 if block >= 2048 else 4)


def reduce_launch(per_sample_numel: int) -> tuple[int, int, int, int]:
    """(BLOCK, num_warps, blocks per sample, blocks padded to a power of two) for two-pass kernels.

    The padding is at least 16 so that the partial row is never a one-element tensor.
    """
    block, warps = flat_launch(per_sample_numel)
    num_blocks = triton.cdiv(per_sample_numel, block)
    return block, warps, num_blocks, max(16, triton.next_power_of_2(num_blocks))


def check_kernel_layout(x_adv: Tensor, **written: Tensor) -> None:
    """Raise unless ``x_adv`` is batch-major and every tensor a kernel writes shares its strides.

    Inputs that are only read are copied into x_adv's layout when needed; tensors written in
    place cannot be, so a mismatch is an error (on every backend, so CPU runs catch it too).
    """
    if not batch_major(x_adv):
        raise ValueError(
            "x_adv must be dense with its batch dimension outermost (contiguous or "
            f"channels_last), got shape {tuple(x_adv.shape)} and strides {x_adv.stride()}"
        )
    for name, t in written.items():
        check_batch(name, t, x_adv)
        # strides of size-1 dims never move a pointer: (4, 2, 1, 1) is NCHW and NHWC at once
        if any(
            a != b for k, a, b in zip(x_adv.shape, t.stride(), x_adv.stride(), strict=True) if k > 1
        ):
            raise ValueError(
                f"{name} has strides {t.stride()}, expected x_adv's {x_adv.stride()} "
                "(same memory layout)"
            )


def launcher_op(name: str, launch: Launcher, mutates: tuple[str, ...]) -> Launcher:
    """``launch`` registered as the torch custom op ``fastrft::<name>``, so that torch.compile
    (fullgraph) treats the Triton launch as one opaque call writing ``mutates`` in place. The
    schema comes from the launcher's type hints; the fake does nothing, since every launcher
    returns None and allocates nothing its caller sees."""
    op = torch.library.custom_op(f"fastrft::{name}", launch, mutates_args=mutates)
    op.register_fake(lambda *args, **kwargs: None)
    return op  # type: ignore[return-value]


def run_step(
    op: Callable[..., None],
    reference: Callable[..., Tensor],
    x_adv: Tensor,
    grad: Tensor,
    x: Tensor,
    eps: float | Tensor,
    alpha: float | Tensor,
    out: Tensor | None,
    backend: Backend,
) -> Tensor:
    """The public wrapper of a step kernel: checks, per-sample scalars (see :func:`per_sample`),
    layouts, then the kernel's custom op on the GPU or the torch reference elsewhere."""
    check_batch("grad", grad, x_adv)
    check_batch("x", x, x_adv)
    if out is None:
        out = torch.empty_like(x_adv)
    check_kernel_layout(x_adv, out=out)
    n = x_adv.shape[0]
    eps_v, alpha_v = per_sample(eps, n, x_adv.device), per_sample(alpha, n, x_adv.device)
    if use_triton(x_adv, backend):
        op(x_adv, like_layout(grad, x_adv), like_layout(x, x_adv), eps_v, alpha_v, out)
    else:
        out.copy_(reference(x_adv, grad, x, eps_v, alpha_v))
    return out
