"""Micro-benchmarks of the fused attack steps against the eager chains they replace.

    pytest benchmarks --benchmark-enable --benchmark-only [--benchmark-json FILE]

Three implementations of each op (benchmarks/cases.py): "triton", the fused kernel; "eager",
the torch chain users write today (benchmarks/eager.py); "torch", the kernel's plain-torch
reference behind the same wrapper (what backend="auto" runs on the CPU). On CUDA every op runs
at batch 128 x 3 x 224 x 224 in float32 and bfloat16, NCHW and NHWC; each round ends with
torch.cuda.synchronize(), because pytest-benchmark reads host clocks. The CPU runs smoke sizes
only: the eager chains and references small, the kernels tiny, since the Triton interpreter
is far too slow for its timings to mean anything. Rounds rotate between input sets, so the L2
cache (50 MB on an H100) never holds a whole set. For GPU numbers to commit, prefer
benchmarks/kernels_gpu.py (CUDA-event timing, GB/s against the copy bandwidth).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from benchmarks.cases import OPS, make_inputs, op_names
from benchmarks.runner import gbps, quantiles_ms

CUDA = torch.cuda.is_available()
IMPLS = ["triton", "eager", "torch"]
SETS = 3  # input sets rotated between rounds

if CUDA:
    SHAPES = dict.fromkeys(IMPLS, (128, 3, 224, 224))
    DTYPES = [torch.float32, torch.bfloat16]
    LAYOUTS = [torch.contiguous_format, torch.channels_last]
    ROUNDS = dict.fromkeys(IMPLS, 50)
    WARMUP = 5  # absorbs Triton's JIT and the caching allocator's first allocations
else:
    SHAPES = {"triton": (2, 3, 16, 16), "eager": (8, 3, 32, 32), "torch": (8, 3, 32, 32)}
    DTYPES = [torch.float32]
    LAYOUTS = [torch.contiguous_format]
    ROUNDS = {"triton": 3, "eager": 20, "torch": 20}
    WARMUP = 1

LAYOUT_NAMES = {torch.contiguous_format: "nchw", torch.channels_last: "nhwc"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_NAMES.get)
@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_name)
@pytest.mark.parametrize("op", OPS, ids=op_names())
def test_kernel(benchmark, op, dtype, layout, impl, device):
    mod, why = op.load()
    if mod is None:
        pytest.skip(why)
    shape = SHAPES[impl]
    sets = [make_inputs(op.norm, shape, dtype, layout, device, seed=i) for i in range(SETS)]
    if impl == "triton":  # the timing of a wrong kernel means nothing
        check = op.check(mod, sets[0])
        assert check["ok"], f"{op.name} disagrees with its reference: {check['note']}"
    if impl == "eager":
        call = op.eager
    else:
        backend = impl

        def call(t):
            return op.fused(mod, t, backend)

    inputs = itertools.cycle(sets)

    def run():
        call(next(inputs))
        if CUDA:
            torch.cuda.synchronize()

    nbytes = op.nbytes(sets[0])
    benchmark.group = f"{op.name} {_dtype_name(dtype)} {LAYOUT_NAMES[layout]}"
    benchmark.extra_info.update(
        op=op.name,
        impl=impl,
        shape=list(shape),
        dtype=_dtype_name(dtype),
        layout=LAYOUT_NAMES[layout],
        bytes=nbytes,
    )
    benchmark.pedantic(run, rounds=ROUNDS[impl], warmup_rounds=WARMUP, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable (one plain call)
        t = quantiles_ms(list(benchmark.stats.stats.data))
        benchmark.extra_info.update(t.as_dict(), gbps=round(gbps(nbytes, t.median_ms), 2))
