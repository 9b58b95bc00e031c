"""l2_step: the two-pass Triton kernel against the plain-torch reference.

Tolerance: the kernel gets ||d|| from the expansion ||d0||^2 + 2 s <d0, g> + s^2 ||g||^2 and
sums in another order than torch, so in float32 its pixels differ from the reference's by a
few float32 ulps (6e-8 measured): ATOL = 1e-6 leaves room for GPU FMA contraction. Stored in
bf16 or fp16, such a difference can flip the last rounding: one storage ulp, DTYPES's atol,
which also covers the interpreter's truncating bf16 cast (cast_tolerance): at most one ulp
from round-to-nearest of a value a few float32 ulps away.
"""

import pytest
import torch

from fastrft.kernels.l2_step import l2_step, l2_step_reference
from tests.helpers import (
    DTYPES,
    LAYOUTS,
    SHAPES,
    assert_close,
    cast_tolerance,
    images,
    l2_eps_per_sample,
    near_l2_ball,
)

ATOL = 1e-6

# SHAPES fit one block per sample; the last spans 3 blocks of 4096, the third one partial,
# so the partial sums of several programs, padded to a power of two, are exercised too
L2_SHAPES = [*SHAPES, (2, 3, 67, 61)]
DTYPE_PARAMS = [pytest.param(d, a, id=str(d).removeprefix("torch.")) for d, a, _ in DTYPES]


def tolerance(dtype, dtype_atol, device) -> float:
    return max(dtype_atol, cast_tolerance(dtype, device)) + ATOL


def l2_inputs(shape, dtype, layout, device):
    x = images(shape, dtype, layout, device)
    eps = l2_eps_per_sample(shape, device)
    x_adv = near_l2_ball(x, eps)
    grad = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=layout)
    # steps from a quarter of the largest budget to twice it: some land outside the ball
    alpha = (0.25 + 1.75 * torch.rand(shape[0], device=device)) * eps.max()
    return x_adv, grad, x, eps, alpha


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("dtype", "dtype_atol"), DTYPE_PARAMS)
@pytest.mark.parametrize("shape", L2_SHAPES)
def test_kernel_matches_reference(shape, dtype, dtype_atol, layout, device):
    x_adv, grad, x, eps, alpha = l2_inputs(shape, dtype, layout, device)
    out = torch.full_like(x_adv, float("nan"))  # poisoned: every entry must be written
    got = l2_step(x_adv, grad, x, eps, alpha, out=out, backend="triton")
    want = l2_step_reference(x_adv, grad, x, eps, alpha)
    assert_close(got, want, atol=tolerance(dtype, dtype_atol, device), what="l2_step")
    assert got.stride() == x_adv.stride(), "the output must keep the input's memory layout"
    assert torch.equal(got[eps == 0], x[eps == 0]), "eps = 0 must give x back"


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_step_stays_in_ball_and_box(layout, backend, device):
    shape = (6, 3, 13, 11)
    x_adv, grad, x, eps, alpha = l2_inputs(shape, torch.float32, layout, device)
    out = l2_step(x_adv, grad, x, eps, alpha, backend=backend)
    dist = (out.double() - x.double()).flatten(1).norm(dim=1)
    # the scale min(eps, ||d||) / ||d|| is good to ~1e-7 relative, and each stored pixel is
    # rounded by up to half a float32 ulp of 1 (2^-24): a vector of norm 2^-24 sqrt(m)
    slack = eps.double() * 1e-6 + 2**-24 * (out[0].numel() ** 0.5)
    assert (dist <= eps + slack).all(), f"outside the ball by {(dist - eps).max().item():.3g}"
    assert out.min() >= 0 and out.max() <= 1
    assert (dist[eps > 0] > 0).all()  # the step moved: not everything collapsed onto x


def test_in_place_equals_out_of_place(device):
    x_adv, grad, x, eps, alpha = l2_inputs((3, 3, 9, 9), torch.float32, torch.channels_last, device)
    want = l2_step(x_adv, grad, x, eps, alpha, backend="triton")
    buf = x_adv.clone()
    l2_step(buf, grad, x, eps, alpha, out=buf, backend="triton")
    assert_close(buf, want, what="in place")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_zero_gradient_and_zero_step_are_finite(backend, device):
    """The 1e-12 guards: ||g|| = 0 (sample 1), and ||d|| = 0 as well (sample 2)."""
    x_adv, grad, x, eps, alpha = l2_inputs(
        (3, 3, 8, 8), torch.float32, torch.contiguous_format, device
    )
    grad[1:] = 0
    x_adv[2] = x[2]
    got = l2_step(x_adv, grad, x, eps, alpha, backend=backend)
    assert_close(got, l2_step_reference(x_adv, grad, x, eps, alpha), atol=ATOL, what="zero grad")
    # no gradient: x_adv projected onto the ball; no gradient and no offset: x itself
    assert torch.equal(got[2], x[2])


def test_cancelling_step_is_finite(device):
    """A step that lands back on x: the expanded ||d||^2 cancels to rounding noise, possibly
    below zero, and must be clamped at 0 before the square root."""
    x, grad = torch.rand(2, 3, 16, 16, device=device), torch.randn(2, 3, 16, 16, device=device)
    alpha = torch.tensor([0.5, 2.0], device=device)
    g_norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x_adv = x - alpha.view(-1, 1, 1, 1) * grad / g_norm
    got = l2_step(x_adv, grad, x, 0.25, alpha, backend="triton")
    eps = torch.full((2,), 0.25, device=device)  # the reference takes ready per-sample vectors
    assert_close(got, l2_step_reference(x_adv, grad, x, eps, alpha), atol=ATOL, what="cancel")


def test_several_blocks_are_deterministic(device):
    x_adv, grad, x, eps, alpha = l2_inputs(
        (2, 3, 67, 61), torch.float32, torch.channels_last, device
    )
    first = l2_step(x_adv, grad, x, eps, alpha, backend="triton")
    assert torch.equal(first, l2_step(x_adv, grad, x, eps, alpha, backend="triton"))


def test_float_eps_equals_per_sample_tensor(device):
    x_adv, grad, x, _, _ = l2_inputs((4, 3, 8, 8), torch.float32, torch.contiguous_format, device)
    got = l2_step(x_adv, grad, x, 0.5, 0.1, backend="triton")
    full = torch.full((4,), 0.5, device=device), torch.full((4,), 0.1, device=device)
    assert_close(got, l2_step(x_adv, grad, x, *full, backend="triton"), what="float eps")


def test_grad_and_x_in_another_layout(device):
    x_adv, grad, x, eps, alpha = l2_inputs(
        (2, 3, 10, 7), torch.float32, torch.channels_last, device
    )
    got = l2_step(x_adv, grad.contiguous(), x.contiguous(), eps, alpha, backend="triton")
    want = l2_step_reference(x_adv, grad, x, eps, alpha)
    assert_close(got, want, atol=ATOL, what="mixed layouts")
    assert got.stride() == x_adv.stride()


def test_compiled_equals_eager(device):
    x_adv, grad, x, eps, alpha = l2_inputs(
        (3, 3, 12, 12), torch.float32, torch.contiguous_format, device
    )

    def step(xa, g, x0):
        return l2_step(xa, g, x0, eps, alpha, backend="triton")

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    assert_close(compiled(x_adv, grad, x), step(x_adv, grad, x), what="compiled")


def test_auto_backend_uses_reference_on_cpu():
    x_adv, grad, x, eps, alpha = l2_inputs(
        (2, 3, 5, 5), torch.float32, torch.contiguous_format, "cpu"
    )
    got = l2_step(x_adv, grad, x, eps, alpha)
    assert_close(got, l2_step_reference(x_adv, grad, x, eps, alpha))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad": torch.zeros(2, 3, 4, 5)}, "grad has shape"),
        ({"x": torch.zeros(3, 3, 4, 4)}, "x has shape"),
        ({"eps": torch.ones(3)}, "per-sample values"),
        ({"alpha": torch.ones(5)}, "per-sample values"),
        ({"out": torch.empty(2, 3, 4, 5)}, "out has shape"),
        (
            {"out": torch.empty(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)},
            "out has strides",
        ),
        ({"x_adv": torch.rand(3, 2, 4, 4).transpose(0, 1)}, "x_adv must be dense"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = {
        "x_adv": torch.rand(2, 3, 4, 4),
        "grad": torch.randn(2, 3, 4, 4),
        "x": torch.rand(2, 3, 4, 4),
        "eps": 0.5,
        "alpha": 0.1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        l2_step(**args)
