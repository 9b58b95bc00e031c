"""How much arithmetic a training step does, so each rung's time converts to TFLOP/s.

Matrix products and convolutions (with torch.utils.flop_counter's formulas; elementwise work
is not counted) are counted by a dispatch mode over one eager step of the rung's attack: the
baseline's (rungs 0-3, counted on rung 0) or fastrft's (rungs 4-7, counted on rung 4), whose
passes differ (AutoAttack's APGD takes one input gradient more than fastrft's). Within each,
the levers change precision, layout and launches, not the arithmetic — the attack
differentiates the input only, whether or not the parameters are frozen — and a captured or
compiled step cannot be counted this way, since its work bypasses dispatch.
(torch's FlopCounterMode is not used: its module tracking fails under torch.autograd.grad.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .ladder import LEVERS, RUNGS, Rung, Workload, release, training_step


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


def counted_rung(rung: Rung) -> Rung:
    """The eager rung whose step has ``rung``'s arithmetic: the same attack, no graphs."""
    return RUNGS[LEVERS.index("fused") + 1] if rung.has("fused") else RUNGS[0]


def step_flops(w: Workload, rung: Rung) -> int:
    """FLOPs of one training step of the workload at ``rung`` (counted on counted_rung)."""
    try:
        step = training_step(counted_rung(rung), w)
        return count_flops(step)
    finally:
        step = None
        release(w.device)
