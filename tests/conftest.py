"""Test set-up. Without a GPU, Triton kernels run on CPU tensors through the interpreter,
which must be switched on before triton is first imported (timm imports it too)."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Imported here, not lazily by its plugin at the end of the session: after FFCV's
# threads have run, a late ast.parse can fail on CPython 3.11.7 ("AST constructor recursion
# depth mismatch"), and that import would parse.
import hypothesis  # noqa: F401
import pytest

from fastrft.toy import TinyCNN, toy_images, train_toy


def pytest_collection_modifyitems(config, items):
    # FFCV's tests last: its loader threads and generated code then run after every test
    # that parses Python source at run time (see the hypothesis import above)
    items.sort(key=lambda item: "ffcv" in item.nodeid or "test_convert" in item.nodeid)
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


@pytest.fixture(scope="session")
def trained():
    """A small standard-trained (non-robust) CNN and 512 held-out images: ~97% clean."""
    torch.manual_seed(0)
    x, y = toy_images(2560, seed=0)
    model = train_toy(TinyCNN(), x[:2048], y[:2048], epochs=8)
    return model, x[2048:], y[2048:]


@pytest.fixture
def tiny_model():
    """An untrained TinyCNN in a mixed state: train mode with one BatchNorm in eval mode,
    the first conv frozen, and a .grad already on the head, to see that attacks restore it."""
    model = TinyCNN(classes=5, width=4)
    model.train()
    model.features[1].eval()
    model.features[0].weight.requires_grad_(False)
    model.head.weight.grad = torch.randn_like(model.head.weight)
    return model


def pytest_unconfigure(config):
    """After FFCV ran, numba's dispatcher finalizers print a KeyError traceback at interpreter
    exit (harmless, numba/FFCV's), after pytest's closing line. End the process here instead,
    with pytest's own exit status, so the summary stays the last thing printed."""
    import sys

    if "ffcv" not in sys.modules:
        return
    import atexit

    status = getattr(config, "_fastrft_exitstatus", None)
    if status is not None:
        atexit.register(_exit_now, int(status))


def pytest_sessionfinish(session, exitstatus):
    session.config._fastrft_exitstatus = exitstatus


def _exit_now(status: int) -> None:
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
