import pytest
import torch

from fastrft.kernels.linf_step import linf_step, linf_step_reference
from tests.helpers import (
    DTYPES,
    LAYOUTS,
    SHAPES,
    assert_close,
    cast_tolerance,
    eps_per_sample,
    images,
    near_ball,
)


def _inputs(shape, dtype, layout, device):
    x = images(shape, dtype, layout, device)
    eps = eps_per_sample(shape[0], device)
    x_adv = near_ball(x, eps)
    grad = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=layout)
    grad[grad.abs() < 0.1] = 0  # sign(0) = 0: no step
    return x_adv, grad, x, eps


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [d for d, _, _ in DTYPES])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference_exactly(shape, dtype, layout, device):
    x_adv, grad, x, eps = _inputs(shape, dtype, layout, device)
    alpha = torch.rand(shape[0], device=device) * 4 / 255
    out = torch.full_like(x_adv, float("nan"))  # poisoned: every entry must be written
    got = linf_step(x_adv, grad, x, eps, alpha, out=out, backend="triton")
    want = linf_step_reference(x_adv, grad, x, eps, alpha)
    assert_close(got, want, atol=cast_tolerance(dtype, device), what="linf_step")
    assert got.stride() == x_adv.stride(), "the output must keep the input's memory layout"


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_step_stays_in_ball_and_box(layout, backend, device):
    x_adv, grad, x, eps = _inputs((6, 3, 13, 11), torch.float32, layout, device)
    out = linf_step(x_adv, grad, x, eps, 2 * eps, backend=backend)
    dist = (out - x).abs().flatten(1).amax(1)
    # |fl(x + eps) - x| may exceed eps by float32 rounding, never by more
    assert (dist <= eps + 1e-7).all(), f"outside the ball by {(dist - eps).max().item():.3g}"
    assert out.min() >= 0 and out.max() <= 1


def test_in_place_equals_out_of_place(device):
    x_adv, grad, x, eps = _inputs((3, 3, 9, 9), torch.float32, torch.channels_last, device)
    want = linf_step(x_adv, grad, x, eps, 1 / 255, backend="triton")
    buf = x_adv.clone()
    linf_step(buf, grad, x, eps, 1 / 255, out=buf, backend="triton")
    assert_close(buf, want, what="in place")


def test_float_eps_equals_per_sample_tensor(device):
    x_adv, grad, x, _ = _inputs((4, 3, 8, 8), torch.float32, torch.contiguous_format, device)
    got = linf_step(x_adv, grad, x, 8 / 255, 2 / 255, backend="triton")
    want = linf_step(
        x_adv, grad, x, torch.full((4,), 8 / 255), torch.full((4,), 2 / 255), backend="triton"
    )
    assert_close(got, want, what="float eps")


def test_grad_in_another_layout(device):
    x_adv, grad, x, eps = _inputs((2, 3, 10, 7), torch.float32, torch.channels_last, device)
    got = linf_step(x_adv, grad.contiguous(), x, eps, 1 / 255, backend="triton")
    want = linf_step_reference(x_adv, grad, x, eps, torch.full((2,), 1 / 255, device=device))
    assert_close(got, want, what="mixed layouts")


def test_compiled_equals_eager(device):
    x_adv, grad, x, eps = _inputs((3, 3, 12, 12), torch.float32, torch.contiguous_format, device)

    def step(xa, g, x0):
        return linf_step(xa, g, x0, eps, 2 / 255, backend="triton")

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    assert_close(compiled(x_adv, grad, x), step(x_adv, grad, x), what="compiled")


def test_auto_backend_uses_reference_on_cpu():
    x_adv, grad, x, eps = _inputs((2, 3, 5, 5), torch.float32, torch.contiguous_format, "cpu")
    got = linf_step(x_adv, grad, x, eps, 1 / 255)
    assert_close(got, linf_step_reference(x_adv, grad, x, eps, torch.full((2,), 1 / 255)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad": torch.zeros(2, 3, 4, 5)}, "grad has shape"),
        ({"eps": torch.ones(3)}, "per-sample values"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = {
        "x_adv": torch.rand(2, 3, 4, 4),
        "grad": torch.randn(2, 3, 4, 4),
        "x": torch.rand(2, 3, 4, 4),
        "eps": 0.1,
        "alpha": 0.01,
    }
    args.update(kwargs)
    backend = args.pop("backend", "auto")
    with pytest.raises(ValueError, match=match):
        linf_step(**args, backend=backend)
