"""Replaying a whole piece of the step from one CUDA graph.

``CapturedCall(fn, inputs)`` warms ``fn`` up on a side stream (cuDNN/cuBLAS handles, Triton
JIT, the backward torch.compile builds lazily), then captures it on static copies of the
inputs. Each call copies new inputs into those buffers and replays: the k kernels of an
attack, or the forward, backward and optimizer step of a training step, launch as one.

Warm-up runs ``fn`` for real. Tensors it must not change (the weights, their optimizer
state, BatchNorm statistics) are passed as ``preserve`` and put back in place afterwards,
so capture leaves the run's trajectory untouched; state that did not exist before the
warm-up (an optimizer's moments, created lazily) is zeroed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

WARMUP = 3


class CapturedCall:
    def __init__(
        self,
        fn: Callable[..., Any],
        inputs: Sequence[Tensor],
        preserve: Callable[[], Iterable[Tensor]] = tuple,
    ) -> None:
        self.inputs = [t.clone() for t in inputs]
        before = {id(t): t.clone() for t in preserve()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t in preserve():
                saved = before.get(id(t))
                t.copy_(saved) if saved is not None else t.zero_()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(*self.inputs)

    def fits(self, *inputs: Tensor) -> bool:
        return all(
            a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype
            for a, b in zip(inputs, self.inputs, strict=True)
        )

    def __call__(self, *inputs: Tensor) -> Any:
        """The captured outputs for ``inputs``: static tensors, overwritten by the next call."""
        for static, new in zip(self.inputs, inputs, strict=True):
            static.copy_(new)
        self.graph.replay()
        return self.out
