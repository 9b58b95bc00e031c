"""apgd_update_: the fused in-place APGD update against the plain-torch reference.

Tolerance: l_inf is exact under the interpreter, but the momentum line a*(z - x_k) + ... may
be contracted into FMAs on the GPU, and l_2 goes through l2_step's expanded norm and a
reduction in another order than torch: ATOL = 1e-6 in float32 (a few ulps; 6e-8 measured).
Stored in bf16/fp16, that can flip the last rounding: one storage ulp, DTYPES's atol, which
also covers the interpreter's truncating bf16 cast (cast_tolerance). x_prev must receive the
old iterate bit for bit, in every dtype.

The outputs are the inputs (in place), so they cannot be poisoned with NaN beforehand; an
unwritten entry still fails: x_prev's old values differ from x_adv's, and x_adv's from the
update almost everywhere.
"""

import pytest
import torch

from fastrft.kernels.apgd_update import apgd_update_, apgd_update_reference
from fastrft.kernels.l2_step import l2_step
from fastrft.kernels.linf_step import linf_step
from tests.helpers import (
    DTYPES,
    LAYOUTS,
    SHAPES,
    assert_close,
    cast_tolerance,
    eps_per_sample,
    images,
    l2_eps_per_sample,
    near_ball,
    near_l2_ball,
)

ATOL = 1e-6
NORMS = ["linf", "l2"]
# SHAPES fit one block per sample; the last spans 3 blocks of 4096 (for l_2's reduction)
L2_SHAPES = [*SHAPES, (2, 3, 67, 61)]
DTYPE_PARAMS = [pytest.param(d, a, id=str(d).removeprefix("torch.")) for d, a, _ in DTYPES]


def tolerance(dtype, dtype_atol, device) -> float:
    return max(dtype_atol, cast_tolerance(dtype, device)) + ATOL


def apgd_inputs(shape, dtype, layout, device, norm):
    """x, a budget per sample (one zero), an iterate and a previous iterate around the ball's
    edge (inside, on it, outside), a gradient with exact zeros (sign 0), APGD's step 2 eps."""
    x = images(shape, dtype, layout, device)
    if norm == "linf":
        eps = eps_per_sample(shape[0], device)
        x_adv, x_prev = near_ball(x, eps), near_ball(x, eps)
    else:
        eps = l2_eps_per_sample(shape, device)
        x_adv, x_prev = near_l2_ball(x, eps), near_l2_ball(x, eps)
    grad = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=layout)
    grad[grad.abs() < 0.1] = 0
    step = 2 * eps + (eps == 0) * 1 / 255  # the zero-budget sample still takes a step
    return x_adv, x_prev, grad, x, eps, step


def run(x_adv, x_prev, grad, x, eps, step, momentum, norm, backend="triton"):
    """The update on copies: returns (x_new, x_prev_new) and leaves the inputs alone."""
    xa, xp = x_adv.clone(), x_prev.clone()
    apgd_update_(xa, xp, grad, x, eps, step, momentum, norm, backend=backend)
    return xa, xp


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("dtype", "dtype_atol"), DTYPE_PARAMS)
@pytest.mark.parametrize("shape", L2_SHAPES)
@pytest.mark.parametrize("norm", NORMS)
def test_kernel_matches_reference(norm, shape, dtype, dtype_atol, layout, device):
    x_adv, x_prev, grad, x, eps, step = apgd_inputs(shape, dtype, layout, device, norm)
    got_new, got_prev = run(x_adv, x_prev, grad, x, eps, step, 0.75, norm)
    want_new, want_prev = apgd_update_reference(x_adv, x_prev, grad, x, eps, step, 0.75, norm)
    assert_close(got_new, want_new, atol=tolerance(dtype, dtype_atol, device), what="x_new")
    assert_close(got_prev, want_prev, what="x_prev")
    assert got_new.stride() == x_adv.stride() and got_prev.stride() == x_prev.stride()
    assert torch.equal(got_new[eps == 0], x[eps == 0]), "eps = 0 must give x back"


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("norm", NORMS)
def test_update_stays_in_ball_and_box(norm, layout, backend, device):
    shape = (6, 3, 13, 11)
    x_adv, x_prev, grad, x, eps, step = apgd_inputs(shape, torch.float32, layout, device, norm)
    new, _ = run(x_adv, x_prev, grad, x, eps, step, 0.75, norm, backend=backend)
    diff = new.double() - x.double()
    if norm == "linf":
        # |fl(x + eps) - x| may exceed eps by float32 rounding, never by more
        dist, slack = diff.abs().flatten(1).amax(1), torch.full_like(eps, 1e-7)
    else:
        # the scale is good to ~1e-7 relative; each stored pixel is rounded by up to half a
        # float32 ulp of 1 (2^-24): a vector of norm 2^-24 sqrt(m)
        dist = diff.flatten(1).norm(dim=1)
        slack = eps * 1e-6 + 2**-24 * (new[0].numel() ** 0.5)
    assert (dist <= eps + slack).all(), f"outside the ball by {(dist - eps).max().item():.3g}"
    assert new.min() >= 0 and new.max() <= 1
    assert (dist[eps > 0] > 0).all()


@pytest.mark.parametrize("norm", NORMS)
def test_first_iteration_is_the_plain_step(norm, device):
    """With momentum 1 the update is the projected step itself, whatever x_prev holds."""
    x_adv, x_prev, grad, x, eps, step = apgd_inputs(
        (3, 3, 11, 9), torch.float32, torch.channels_last, device, norm
    )
    new, prev = run(x_adv, x_prev, grad, x, eps, step, 1.0, norm)
    plain = linf_step if norm == "linf" else l2_step
    assert_close(new, plain(x_adv, grad, x, eps, step, backend="triton"), atol=ATOL, what=norm)
    assert torch.equal(prev, x_adv)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("norm", NORMS)
def test_zero_gradient_and_zero_offset_are_finite(norm, backend, device):
    """The 1e-12 guards: ||g|| = 0 (samples 1, 2), and w = x as well (sample 2)."""
    x_adv, x_prev, grad, x, eps, step = apgd_inputs(
        (3, 3, 8, 8), torch.float32, torch.contiguous_format, device, norm
    )
    grad[1:] = 0
    x_adv[2], x_prev[2] = x[2], x[2]
    got_new, _ = run(x_adv, x_prev, grad, x, eps, step, 0.75, norm, backend=backend)
    want_new, _ = apgd_update_reference(x_adv, x_prev, grad, x, eps, step, 0.75, norm)
    assert_close(got_new, want_new, atol=ATOL, what="zero grad")
    assert torch.equal(got_new[2], x[2])


def test_compiled_equals_eager(device):
    """Both norms in one compiled graph: one compilation for the whole file (inductor on CPU
    is slow)."""
    inputs = {
        n: apgd_inputs((3, 3, 12, 12), torch.float32, torch.contiguous_format, device, n)
        for n in NORMS
    }

    def update(linf, l2):
        for norm, (xa, xp, g, x0, eps, step) in zip(NORMS, (linf, l2), strict=True):
            apgd_update_(xa, xp, g, x0, eps, step, 0.75, norm, backend="triton")

    def fresh():
        return [[t.clone() for t in inputs[n]] for n in NORMS]

    eager, compiled = fresh(), fresh()
    update(*eager)
    torch.compile(update, fullgraph=True, dynamic=False)(*compiled)
    for norm, e, c in zip(NORMS, eager, compiled, strict=True):
        assert_close(c[0], e[0], what=f"{norm} x_new")
        assert_close(c[1], e[1], what=f"{norm} x_prev")


@pytest.mark.parametrize("norm", NORMS)
def test_auto_backend_uses_reference_on_cpu(norm):
    x_adv, x_prev, grad, x, eps, step = apgd_inputs(
        (2, 3, 5, 5), torch.float32, torch.contiguous_format, "cpu", norm
    )
    got = run(x_adv, x_prev, grad, x, eps, step, 0.75, norm, backend="auto")
    want = apgd_update_reference(x_adv, x_prev, grad, x, eps, step, 0.75, norm)
    assert_close(got[0], want[0], what="x_new")
    assert_close(got[1], want[1], what="x_prev")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "l1"}, "norm must be one of"),
        ({"x_prev": torch.rand(2, 3, 4, 5)}, "x_prev has shape"),
        (
            {"x_prev": torch.rand(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)},
            "x_prev has strides",
        ),
        ({"grad": torch.zeros(2, 3, 4, 5)}, "grad has shape"),
        ({"x": torch.zeros(1, 3, 4, 4)}, "x has shape"),
        ({"eps": torch.ones(3)}, "per-sample values"),
        ({"step_size": torch.ones(3)}, "per-sample values"),
        ({"x_adv": torch.rand(3, 2, 4, 4).transpose(0, 1)}, "x_adv must be dense"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = {
        "x_adv": torch.rand(2, 3, 4, 4),
        "x_prev": torch.rand(2, 3, 4, 4),
        "grad": torch.randn(2, 3, 4, 4),
        "x": torch.rand(2, 3, 4, 4),
        "eps": 8 / 255,
        "step_size": 2 / 255,
        "momentum": 0.75,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        apgd_update_(**args)


def test_reference_names_a_bad_norm():
    t = torch.rand(1, 3, 2, 2)
    with pytest.raises(ValueError, match="norm"):
        apgd_update_reference(t, t, t, t, 0.1, 0.1, 0.75, "linf2")
