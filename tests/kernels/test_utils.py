"""The kernels' shared launch helpers."""

import contextlib
import types

import torch

from fastrft.kernels._utils import on_tensors_device


def test_launchers_run_on_their_tensors_gpu(monkeypatch):
    """Triton launches on the current device: a launcher given tensors on another GPU
    switches to it for the launch, and only then."""
    switched = []

    @contextlib.contextmanager
    def device(d):
        switched.append(d.index)
        yield

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", device)
    launched = []
    launch = on_tensors_device(lambda first, *rest: launched.append((first.device.index, rest)))

    def on_gpu(index):
        return types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", index))

    launch(on_gpu(1), "eps")
    launch(on_gpu(0), "eps")
    launch(torch.zeros(1), "eps")
    assert switched == [1]
    assert [rest for _, rest in launched] == [("eps",)] * 3
