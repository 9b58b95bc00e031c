"""The kernels' shared launch helpers."""

import contextlib
import types

import torch

from fastrft.kernels.common import on_tensors_device, per_sample


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


def test_a_ready_budget_passes_through_and_anything_else_is_made_ready():
    """per_sample is the one conversion: a float32 (N,) vector on the device comes back as
    itself, so converting once upstream leaves the kernels' own calls a shape check."""
    eps = torch.rand(4)
    assert per_sample(eps, 4, eps.device) is eps
    made = per_sample(eps.double().view(4, 1), 4, eps.device)
    assert made.dtype == torch.float32 and made.shape == (4,) and torch.allclose(made, eps)
    assert torch.equal(per_sample(0.5, 3, eps.device), torch.full((3,), 0.5))
    assert torch.equal(per_sample(torch.tensor([0.5]), 3, eps.device), torch.full((3,), 0.5))


def test_every_launcher_is_a_torch_custom_op():
    """The ops torch.compile sees: each launcher registered, under fastrft:: (importing
    fastrft.kernels, as above, registers them all)."""
    for name in ("linf_step", "l2_step", "apgd_update", "random_start"):
        assert hasattr(torch.ops.fastrft, name), name
