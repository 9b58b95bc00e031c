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
