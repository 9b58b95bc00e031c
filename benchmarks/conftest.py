"""pytest-benchmark set-up for the kernel micro-benchmarks (``pytest benchmarks
--benchmark-enable --benchmark-only``). Without a GPU, Triton kernels run on CPU tensors through
the interpreter, which must be switched on before triton is first imported."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from benchmarks.runner import environment


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Device, driver and versions in the machine_info of every saved result."""
    machine_info["fastrft"] = environment(_device())


@pytest.fixture
def device() -> torch.device:
    """The GPU when there is one, else CPU tensors (kernels under the interpreter)."""
    return _device()
