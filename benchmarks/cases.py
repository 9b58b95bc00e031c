"""What the kernel benchmarks run: each fused op, its eager chain and its reference, on fresh
random inputs, with the bytes the op must move and a check of the fused result.

Shared by test_bench_kernels.py (pytest-benchmark) and kernels_gpu.py (the GPU script), so the
two time the same calls on the same inputs. An op whose kernel module is missing (or does not
import) is reported by ``OpCase.load`` and skipped, never an error: kernels land one by one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from benchmarks.eager import (
    apgd_update_eager,
    l2_step_eager,
    linf_step_eager,
    random_start_eager,
)

Inputs = dict[str, Tensor]

# momentum of the benchmarked APGD update (AutoAttack's a = 0.75 after the first iteration)
MOMENTUM = 0.75

# Largest difference allowed between the fused result and its reference: the l2 kernels sum
# norms in another order, so a value may land a float32 rounding (or one bf16/fp16 step, two
# under the interpreter's truncating casts) away. linf_step is exact on the GPU.
CHECK_ATOL = {torch.float32: 1e-5, torch.bfloat16: 2**-7, torch.float16: 2**-10}
# how far a stored value in [0, 1] may sit from its float32 value: one step of the dtype just
# below 1 (twice the round-to-nearest error; the interpreter's bf16 cast truncates)
STORE_TOL = {torch.float32: 2**-24, torch.bfloat16: 2**-8, torch.float16: 2**-11}


def make_inputs(
    norm: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    layout: torch.memory_format,
    device: torch.device | str,
    seed: int,
) -> Inputs:
    """Fresh random inputs, never zeros: pixels in [0, 1] with exact 0s and 1s mixed in, iterates
    inside the ``norm`` ball, a Gaussian gradient, per-sample float32 budgets and steps."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    n = shape[0]

    def rand(*size: int) -> Tensor:
        return torch.rand(size, generator=gen, device=device)

    def randn(*size: int) -> Tensor:
        return torch.randn(size, generator=gen, device=device)

    x = rand(*shape)
    x = torch.where(rand(*shape) < 0.05, x.round(), x)
    ps = (n,) + (1,) * (len(shape) - 1)
    if norm == "linf":
        eps = 2 / 255 + rand(n) * 14 / 255

        def inside() -> Tensor:
            return x + eps.view(ps) * (2 * rand(*shape) - 1)
    else:
        eps = 0.5 + rand(n) * 2.5

        def inside() -> Tensor:
            v = randn(*shape)
            return x + (0.5 * eps).view(ps) * v / v.flatten(1).norm(dim=1).view(ps)

    def image(t: Tensor) -> Tensor:
        return t.clamp(0, 1).to(dtype).contiguous(memory_format=layout)

    x_adv, x_prev = image(inside()), image(inside())
    return {
        "x": image(x),
        "x_adv": x_adv,
        "x_prev": x_prev,
        "grad": randn(*shape).to(dtype).contiguous(memory_format=layout),
        "eps": eps,
        "alpha": eps / 4,
        "out": torch.empty_like(x_adv),
    }


def clone_inputs(inputs: Inputs) -> Inputs:
    return {k: v.clone() for k, v in inputs.items()}


@dataclass(frozen=True)
class OpCase:
    """One fused op in one configuration (a norm), as the benchmarks call it."""

    name: str
    module: str  # the kernel module, under fastrft.kernels
    function: str  # the public function in it
    norm: str
    reads: int  # image-sized tensors the op must read ...
    writes: int  # ... and write: the minimal traffic, each once
    fused: Callable[[ModuleType, Inputs, str], Any]  # (module, inputs, backend)
    eager: Callable[[Inputs], Any]
    reference: Callable[[ModuleType, Inputs], Any]
    random: bool = False  # a random draw: checked by invariants, not against the reference

    def load(self) -> tuple[ModuleType | None, str]:
        """(the kernel module, "") or (None, why it is skipped)."""
        try:
            mod = importlib.import_module(f"fastrft.kernels.{self.module}")
        except ModuleNotFoundError as err:
            return None, f"skipped: {err}"
        except Exception as err:  # a module mid-edit must not take the other ops down
            return None, f"skipped: fastrft.kernels.{self.module} failed to import: {err!r}"
        for attr in (self.function, f"{self.function.rstrip('_')}_reference"):
            if not hasattr(mod, attr):
                return None, f"skipped: fastrft.kernels.{self.module} has no {attr}"
        return mod, ""

    def nbytes(self, inputs: Inputs) -> int:
        x = inputs["x"]
        return (self.reads + self.writes) * x.numel() * x.element_size()

    def check(self, mod: ModuleType, inputs: Inputs, impl: str = "fused") -> dict[str, Any]:
        """Run the fused op (or the eager chain) on a copy of ``inputs`` and compare it with the
        reference; returns {"ok", "max_abs_diff", "note"}. Never raises on a mismatch."""
        work = clone_inputs(inputs)
        got = self.fused(mod, work, "triton") if impl == "fused" else self.eager(work)
        if self.random:
            return _check_random_start(got, mod, inputs, self.norm)
        want = self.reference(mod, clone_inputs(inputs))
        got_t, want_t = _as_tuple(got), _as_tuple(want)
        dtype = inputs["x"].dtype
        worst, bad = 0.0, 0
        for g, w in zip(got_t, want_t, strict=True):
            if torch.isnan(g).any():
                return {"ok": False, "max_abs_diff": float("nan"), "note": "NaN in the result"}
            err = (g.double() - w.double()).abs()
            worst = max(worst, err.max().item())
            bad += int((err > CHECK_ATOL[dtype]).sum())
        note = "" if bad == 0 else f"{bad} entries beyond atol {CHECK_ATOL[dtype]:.3g}"
        return {"ok": bad == 0, "max_abs_diff": worst, "note": note}


def _as_tuple(t: Any) -> tuple[Tensor, ...]:
    return tuple(t) if isinstance(t, tuple | list) else (t,)


def _check_random_start(got: Tensor, mod: ModuleType, inputs: Inputs, norm: str) -> dict:
    """Inside the box and the ball, and the mean |offset| within sampling error of the
    reference's (the two draw from different generators, so no element-wise comparison)."""
    x, eps = inputs["x"], inputs["eps"].double()
    if torch.isnan(got).any():
        return {"ok": False, "max_abs_diff": None, "note": "NaN in the result"}
    notes = []
    if got.min() < 0 or got.max() > 1:
        notes.append("outside the box")
    d = (got.double() - x.double()).flatten(1)
    tol = STORE_TOL[x.dtype]
    if norm == "linf":
        over = d.abs().amax(1) - (eps + tol)
    else:
        over = d.norm(dim=1) - (eps * (1 + 1e-5) + tol * d.shape[1] ** 0.5)
    if (over > 0).any():
        notes.append(f"outside the {norm} ball by {over.max().item():.3g}")
    want = (mod.random_start_reference(x, inputs["eps"], norm).double() - x.double()).flatten(1)
    m_got, m_want = d.abs().mean().item(), want.abs().mean().item()
    rel = abs(m_got - m_want) / max(m_want, 1e-12)
    if rel > 0.02 + 3.6 / d.numel() ** 0.5:  # ~6 sigma of the sampling error at small sizes
        notes.append(f"mean |offset| {m_got:.4g} vs the reference's {m_want:.4g}")
    return {"ok": not notes, "max_abs_diff": None, "note": "; ".join(notes)}


def _step(fn_name: str) -> Callable[[ModuleType, Inputs, str], Tensor]:
    def call(mod: ModuleType, t: Inputs, backend: str) -> Tensor:
        fn = getattr(mod, fn_name)
        return fn(
            t["x_adv"], t["grad"], t["x"], t["eps"], t["alpha"], out=t["out"], backend=backend
        )

    return call


def _apgd(norm: str) -> Callable[[ModuleType, Inputs, str], tuple[Tensor, Tensor]]:
    def call(mod: ModuleType, t: Inputs, backend: str) -> tuple[Tensor, Tensor]:
        mod.apgd_update_(
            t["x_adv"],
            t["x_prev"],
            t["grad"],
            t["x"],
            t["eps"],
            t["alpha"],
            MOMENTUM,
            norm,
            backend=backend,
        )
        return t["x_adv"], t["x_prev"]

    return call


def _random_start(norm: str) -> Callable[[ModuleType, Inputs, str], Tensor]:
    def call(mod: ModuleType, t: Inputs, backend: str) -> Tensor:
        # seed=None: a fresh seed tensor per call, as an attack in a CUDA graph draws it
        return mod.random_start(t["x"], t["eps"], norm, out=t["out"], backend=backend)

    return call


def _apgd_eager(norm: str) -> Callable[[Inputs], tuple[Tensor, Tensor]]:
    def call(t: Inputs) -> tuple[Tensor, Tensor]:
        apgd_update_eager(
            t["x_adv"], t["x_prev"], t["grad"], t["x"], t["eps"], t["alpha"], MOMENTUM, norm
        )
        return t["x_adv"], t["x_prev"]

    return call


def _random_start_eager(norm: str) -> Callable[[Inputs], Tensor]:
    return lambda t: random_start_eager(t["x"], t["eps"], norm)


def _random_start_reference(norm: str) -> Callable[[ModuleType, Inputs], Tensor]:
    return lambda m, t: m.random_start_reference(t["x"], t["eps"], norm)


def _apgd_reference(norm: str) -> Callable[[ModuleType, Inputs], tuple[Tensor, Tensor]]:
    def call(mod: ModuleType, t: Inputs) -> tuple[Tensor, Tensor]:
        return mod.apgd_update_reference(
            t["x_adv"], t["x_prev"], t["grad"], t["x"], t["eps"], t["alpha"], MOMENTUM, norm
        )

    return call


OPS: list[OpCase] = [
    OpCase(
        name="linf_step",
        module="linf_step",
        function="linf_step",
        norm="linf",
        reads=3,
        writes=1,
        fused=_step("linf_step"),
        eager=lambda t: linf_step_eager(t["x_adv"], t["grad"], t["x"], t["eps"], t["alpha"]),
        reference=lambda m, t: m.linf_step_reference(
            t["x_adv"], t["grad"], t["x"], t["eps"], t["alpha"]
        ),
    ),
    OpCase(
        name="l2_step",
        module="l2_step",
        function="l2_step",
        norm="l2",
        reads=3,
        writes=1,
        fused=_step("l2_step"),
        eager=lambda t: l2_step_eager(t["x_adv"], t["grad"], t["x"], t["eps"], t["alpha"]),
        reference=lambda m, t: m.l2_step_reference(
            t["x_adv"], t["grad"], t["x"], t["eps"], t["alpha"]
        ),
    ),
    *(
        OpCase(
            name=f"apgd_update_{norm}",
            module="apgd_update",
            function="apgd_update_",
            norm=norm,
            reads=4,
            writes=2,
            fused=_apgd(norm),
            eager=_apgd_eager(norm),
            reference=_apgd_reference(norm),
        )
        for norm in ("linf", "l2")
    ),
    *(
        OpCase(
            name=f"random_start_{norm}",
            module="random_start",
            function="random_start",
            norm=norm,
            reads=1,
            writes=1,
            fused=_random_start(norm),
            eager=_random_start_eager(norm),
            reference=_random_start_reference(norm),
            random=True,
        )
        for norm in ("linf", "l2")
    ),
]


def op_names() -> list[str]:
    return [op.name for op in OPS]
