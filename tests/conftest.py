"""Test set-up. Without a GPU, Triton kernels run on CPU tensors through the interpreter,
which must be switched on before triton is first imported (timm imports it too)."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seed, so a failure reproduces."""
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    """Where kernels run: the GPU when there is one, else CPU tensors under the interpreter."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
