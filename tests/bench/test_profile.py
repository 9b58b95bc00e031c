"""The profile's GPU branch, with a stand-in profiler: kernels only (their device time),
no operator or user annotation counted twice, shares of the kernels' total."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from fastrft.bench import profile


def _event(key, device_us, device_type=DeviceType.CUDA, annotation=False, count=3):
    return SimpleNamespace(
        key=key,
        self_device_time_total=device_us,
        self_cpu_time_total=10.0,
        device_type=device_type,
        is_user_annotation=annotation,
        count=count,
    )


def test_on_a_gpu_the_kernels_share_their_own_total(monkeypatch):
    events = [
        _event("aten::convolution", 900.0, DeviceType.CPU),  # its kernels' time, again
        _event("CompiledFunction", 1500.0, annotation=True),  # a region, not a kernel
        _event("sm90_xmma_fprop", 600.0),
        _event("triton_poi_fused_add_relu_0", 300.0),
        _event("void at::native::elementwise_kernel", 100.0, count=6),
        _event("cudaGraphLaunch", 0.0, DeviceType.CPU),
    ]
    prof = SimpleNamespace(key_averages=lambda: events)
    monkeypatch.setattr(profile, "profile", lambda activities: contextlib.nullcontext(prof))
    monkeypatch.setattr(profile, "synchronize", lambda device: None)
    ops = profile.top_operators(lambda: None, torch.device("cuda"), steps=3)
    assert [op["op"] for op in ops] == [
        "sm90_xmma_fprop",
        "triton_poi_fused_add_relu_0",
        "void at::native::elementwise_kernel",
    ]
    assert [op["share"] for op in ops] == pytest.approx([0.6, 0.3, 0.1])
    assert ops[0]["self_ms_per_step"] == pytest.approx(0.2)
    assert ops[2]["calls_per_step"] == 2
