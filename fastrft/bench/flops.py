"""How much arithmetic a training step does, so each rung's time converts to TFLOP/s.

Matrix products and convolutions (with torch.utils.flop_counter's formulas; elementwise work
is not counted) are counted by a dispatch mode over one eager step of rung 0. Every rung
computes the same products — the attack differentiates the input only, whether or not the
parameters are frozen — and changes precision, layout and launches, not the arithmetic; a
captured or compiled step cannot be counted this way, since its work bypasses dispatch.
(torch's FlopCounterMode is not used: its module tracking fails under torch.autograd.grad.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .ladder import RUNGS, Workload, release, training_step


class _FlopCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """Matrix-product and convolution FLOPs of one call of ``fn``, backward passes included."""
    with _FlopCounter() as counter:
        fn()
    return counter.total


def step_flops(w: Workload) -> int:
    """FLOPs of one training step of the workload (its rung 0, on the workload's device)."""
    try:
        step = training_step(RUNGS[0], w)
        return count_flops(step)
    finally:
        step = None
        release(w.device)
