"""Replaying a piece of the training step from one CUDA graph.

``CapturedCall(fn, inputs)`` runs ``fn`` a few times for real (cuDNN/cuBLAS handles, Triton
JIT, the backward that torch.compile builds lazily, an optimizer's lazily created state),
then captures it on static copies of the inputs. Each call copies new inputs into those
buffers and replays: the k steps of an attack, or a whole training step, launch as one.

Warm-up and capture run on one side stream of the device's own. Autograd nodes keep the
stream they were created on (an ``AccumulateGrad`` node lives as long as any graph holds it),
and a backward captured on one stream that meets a node of another fails with "operation
would make the legacy stream depend on a capturing blocking stream" (pytorch#137483,
pytorch#180090): with a single stream, every node the warm-up leaves behind is on the
capturing stream already. Where torch has the switch, stale streams from earlier eager
steps are redirected to the capturing one as well.

Tensors the warm-up must not change (weights, BatchNorm statistics, optimizer state) are
passed as ``preserve`` and put back afterwards, so capture leaves the run's trajectory
untouched; state that did not exist before the warm-up (an optimizer's moments) is zeroed.
The copies kept meanwhile sit on the GPU: about three times the weights, with AdamW.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

WARMUP = 3
_STREAMS: dict[int, torch.cuda.Stream] = {}


def capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream every warm-up and capture on ``device`` runs on."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _STREAMS:
        _STREAMS[index] = torch.cuda.Stream(device=index)
    return _STREAMS[index]


@contextlib.contextmanager
def _redirect_stale_streams() -> Iterator[None]:
    """Let autograd move nodes left on a non-capturing stream onto the capturing one (torch
    versions with ``set_override_stale_capture_stream``, 2.12 on; a no-op before), then put
    the process-wide setting back as it was."""
    switch = getattr(torch.autograd.graph, "set_override_stale_capture_stream", None)
    if switch is None:
        yield
        return
    before = torch._C._override_stale_capture_stream()
    switch(True)
    try:
        yield
    finally:
        switch(before)


class CaptureFailed(RuntimeError):
    """torch could not capture the call (its warm-up ran fine); the model is as it was."""


class CapturedCall:
    def __init__(
        self,
        fn: Callable[..., Any],
        inputs: Sequence[Tensor],
        preserve: Callable[[], Iterable[Tensor]] = tuple,
    ) -> None:
        self.inputs = [t.clone() for t in inputs]
        stream = capture_stream(self.inputs[0].device)
        gc.collect()  # dead autograd graphs, whose nodes may hold another stream
        before = {id(t): t.clone() for t in preserve()}
        caller = torch.cuda.current_stream()
        stream.wait_stream(caller)
        try:
            with torch.cuda.stream(stream):
                try:
                    for _ in range(WARMUP):
                        fn(*self.inputs)
                finally:
                    _restore(preserve(), before)
        finally:
            caller.wait_stream(stream)  # the restore reads `before`, freed next
        del before
        self.graph = torch.cuda.CUDAGraph()
        try:
            # global: backward runs on autograd's device thread, whose unsafe calls (a
            # synchronisation, an allocation outside the pool) thread_local would not
            # report; a refused capture is a clear stop, a silently wrong graph is not
            with (
                _redirect_stale_streams(),
                torch.cuda.graph(self.graph, stream=stream, capture_error_mode="global"),
            ):
                self.out = fn(*self.inputs)
        except RuntimeError as e:
            if isinstance(e, torch.cuda.OutOfMemoryError):
                raise
            raise CaptureFailed(_first_line(e)) from e
        caller.wait_stream(stream)

    def fits(self, *inputs: Tensor) -> bool:
        """Whether ``inputs`` (as many, of the same shapes, strides and dtypes) can replay."""
        return len(inputs) == len(self.inputs) and all(
            a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype
            for a, b in zip(inputs, self.inputs, strict=True)
        )

    def __call__(self, *inputs: Tensor) -> Any:
        """The captured outputs for ``inputs``: static tensors, overwritten by the next call."""
        for static, new in zip(self.inputs, inputs, strict=True):
            static.copy_(new)
        self.graph.replay()
        return self.out


@torch.no_grad()
def _restore(tensors: Iterable[Tensor], saved: dict[int, Tensor]) -> None:
    """Put back what the warm-up changed; zero what it created."""
    for t in tensors:
        before = saved.get(id(t))
        t.copy_(before) if before is not None else t.zero_()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
