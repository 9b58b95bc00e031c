"""The random start: inside the ball and the box, seeded, and distributed as the formula says.

The kernel draws from Triton's Philox streams and the reference from torch's generators, so the
two never agree bit for bit: these tests check invariants and distributions, on both backends.
"""

import pytest
import torch
from torch import Tensor

from fastrft.kernels.random_start import random_start, random_start_reference
from tests.helpers import DTYPES, LAYOUTS, SHAPES, assert_close, eps_per_sample, images

BACKENDS = ["triton", "torch"]
NORMS = ["linf", "l2"]

# How far a stored value in [0, 1] may sit from the float32 value it rounds: one step of the
# dtype just below 1, which is twice the error of rounding to nearest, and the error of the
# bf16 cast of Triton's CPU interpreter, which truncates (see tests.helpers.cast_tolerance).
STORE_TOL = {torch.float32: 2**-24, torch.float16: 2**-11, torch.bfloat16: 2**-8}
# relative float32 error of eps_n * r_n / ||v|| (a reduction over up to 4,800 squares)
SCALE_RTOL = 1e-5


def _distances(out: Tensor, x: Tensor, norm: str) -> Tensor:
    d = (out.double() - x.double()).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


def _large_ids(n: int, device) -> Tensor:
    """Ids far from the positions 0..n-1: a keyed draw must be as uniform as a positional one."""
    return torch.arange(n, device=device) + 10**9


def _ks(u: Tensor) -> float:
    """Kolmogorov-Smirnov distance between the values u (their CDF under the null) and U[0, 1]."""
    s = u.double().flatten().sort().values
    n = s.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64, device=s.device)
    return max((i / n - s).max().item(), (s - (i - 1) / n).max().item())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [d for d, _, _ in DTYPES])
@pytest.mark.parametrize("shape", SHAPES)
def test_inside_ball_and_box(shape, dtype, layout, norm, backend, device):
    x = images(shape, dtype, layout, device)
    eps = eps_per_sample(shape[0], device)  # eps[0] = 0: that sample must come back as x
    out = torch.full_like(x, float("nan"))  # poisoned: every entry must be written
    got = random_start(x, eps, norm, seed=1234, out=out, backend=backend)
    assert got is out
    assert not torch.isnan(got).any(), f"{int(torch.isnan(got).sum())} entries never written"
    assert got.stride() == x.stride(), "the output must keep the input's memory layout"
    assert got.min() >= 0 and got.max() <= 1, "outside the box"
    assert_close(got[0], x[0], what="eps = 0 sample")
    dist = _distances(got, x, norm)
    d = x[0].numel()
    # linf: each element off by one rounding at most; l2: sqrt(d) roundings, and the scale's
    tol = STORE_TOL[dtype] if norm == "linf" else STORE_TOL[dtype] * d**0.5
    bound = eps.double() * (1 + (SCALE_RTOL if norm == "l2" else 0.0)) + tol
    assert (dist <= bound).all(), f"outside the {norm} ball by {(dist - bound).max().item():.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [d for d, _, _ in DTYPES])
def test_zero_eps_returns_x_exactly(dtype, norm, backend, device):
    x = images((3, 3, 9, 7), dtype, torch.channels_last, device)
    assert_close(random_start(x, 0.0, norm, seed=7, backend=backend), x, what="eps = 0")


@pytest.mark.parametrize("norm", NORMS)
def test_float_eps_equals_per_sample_tensor(norm, device):
    x = images((4, 3, 8, 8), device=device)
    got = random_start(x, 8 / 255, norm, seed=3, backend="triton")
    want = random_start(x, torch.full((4,), 8 / 255), norm, seed=3, backend="triton")
    assert_close(got, want, what="float eps")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
def test_per_sample_eps_reaches_the_sphere(norm, backend, device):
    # 4,800 elements per sample: two blocks of the kernel, the second with a masked tail, so
    # the l2 norm needs both partial sums and none of the tail's normals. x = 0.5, far from
    # the box. In d = 4,800 dimensions r = u^(1/d) > 0.99 but with probability e^-48.
    x = torch.full((4, 3, 40, 40), 0.5, device=device)
    eps = torch.tensor([0.05, 0.1, 0.2, 0.4], device=device)
    dist = _distances(random_start(x, eps, norm, seed=11, backend=backend), x, norm)
    e = eps.double()
    assert (dist >= 0.99 * e).all() and (dist <= e * (1 + SCALE_RTOL) + 1e-6).all(), (
        f"{norm} distances {dist.tolist()} for eps {eps.tolist()}"
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
def test_seeds(norm, backend, device):
    x = images((3, 3, 16, 16), device=device)
    a = random_start(x, 0.1, norm, seed=5, backend=backend)
    assert torch.equal(a, random_start(x, 0.1, norm, seed=5, backend=backend)), "same seed"
    b = random_start(x, 0.1, norm, seed=torch.tensor(5), backend=backend)
    assert torch.equal(a, b), "an int seed and a tensor seed of the same value differ"
    c = random_start(x, 0.1, norm, seed=6, backend=backend)
    assert (a != c).float().mean() > 0.5, "seeds 5 and 6 give mostly the same noise"


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
def test_manual_seed_makes_seed_none_reproducible(norm, backend, keyed, device):
    x = images((2, 3, 8, 8), device=device)
    ids = torch.tensor([7, 3], device=device) if keyed else None
    torch.manual_seed(42)
    a = random_start(x, 0.1, norm, ids=ids, backend=backend)
    b = random_start(x, 0.1, norm, ids=ids, backend=backend)
    torch.manual_seed(42)
    c = random_start(x, 0.1, norm, ids=ids, backend=backend)
    assert torch.equal(a, c), "torch.manual_seed did not reproduce the draw"
    assert not torch.equal(a, b), "two calls with seed=None drew the same noise"


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_linf_offsets_are_uniform(backend, keyed, device):
    x = torch.full((4, 3, 32, 32), 0.5, device=device)
    eps = 0.25  # [0.25, 0.75]: the box never clamps
    ids = _large_ids(4, device) if keyed else None
    delta = (random_start(x, eps, "linf", seed=2024, ids=ids, backend=backend) - x).double()
    n = delta.numel()
    ks = _ks((delta / eps + 1) / 2)
    assert ks < 2.5 / n**0.5, f"KS distance {ks:.4f} to U[-eps, eps] over {n} offsets"
    assert abs(delta.mean().item()) < 0.02 * eps, f"mean offset {delta.mean().item():.3g}"
    assert delta.min() < -0.995 * eps and delta.max() > 0.995 * eps
    assert delta.abs().max() <= eps + 2**-24
    # every element its own draw: a repeated Philox counter would repeat values
    assert delta.unique().numel() > 0.99 * n, "offsets repeat: Philox counters are not unique"
    flat = delta.flatten()
    corr = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()
    assert abs(corr) < 0.05, f"neighbouring offsets correlate: {corr:.3f}"


# the kernel without ids draws exactly what it draws with ids 0..N-1
# (test_no_ids_means_ids_are_the_positions), so its slow interpreted run is keyed only
@pytest.mark.parametrize(
    ("backend", "keyed"), [("triton", True), ("torch", False), ("torch", True)]
)
def test_l2_radius_and_direction_in_three_dimensions(backend, keyed, device):
    # uniform in the 3-d ball: r = ||x0 - x|| / eps has P(r <= t) = t^3, and each coordinate
    # of the direction is uniform on [-1, 1] (Archimedes). 256 samples keep the interpreter
    # (one program per sample) to a few seconds, so the bounds are generous.
    n = 256
    x = torch.full((n, 3, 1, 1), 0.5, device=device)
    eps = 0.25  # |x0 - x| <= 0.25 per coordinate: the box never clamps
    ids = _large_ids(n, device) if keyed else None
    delta = random_start(x, eps, "l2", seed=99, ids=ids, backend=backend) - x
    delta = delta.double().flatten(1)
    r = delta.norm(dim=1) / eps
    assert r.max() <= 1 + SCALE_RTOL
    ks = _ks(r**3)
    assert ks < 0.12, f"KS distance {ks:.3f} between r^3 and U[0, 1] over {n} samples"
    inner = (r <= 0.5).double().mean().item()
    assert abs(inner - 1 / 8) < 0.07, f"P(r <= eps/2) = {inner:.3f}, expected 1/8"
    direction = delta / delta.norm(dim=1, keepdim=True)
    assert direction.mean(0).abs().max() < 0.15, f"direction mean {direction.mean(0).tolist()}"
    ks_dir = _ks((direction[:, 2] + 1) / 2)
    assert ks_dir < 0.12, f"KS distance {ks_dir:.3f} of a direction coordinate to U[-1, 1]"


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_noise_is_gaussian_in_high_dimension(backend, keyed, device):
    # in d = 4,800 dims, r ~ 1 and ||v|| ~ sqrt(d), so sqrt(d) (x0 - x) / ||x0 - x|| ~ N(0, 1)
    x = torch.full((4, 3, 40, 40), 0.5, device=device)
    ids = _large_ids(4, device) if keyed else None
    delta = random_start(x, 0.1, "l2", seed=8, ids=ids, backend=backend) - x
    delta = delta.double().flatten(1)
    z = delta / delta.norm(dim=1, keepdim=True) * delta.shape[1] ** 0.5
    ks = _ks(torch.special.ndtr(z))
    assert ks < 2.5 / z.numel() ** 0.5, f"KS distance {ks:.4f} to N(0, 1) over {z.numel()}"


def test_out_aliases_layouts_and_strided_input(device):
    x = images((3, 3, 12, 10), layout=torch.channels_last, device=device)
    want = random_start(x, 0.1, "l2", seed=4, backend="triton")
    buf = x.clone()
    random_start(buf, 0.1, "l2", seed=4, out=buf, backend="triton")
    assert_close(buf, want, what="in place")
    other = torch.empty_like(x, memory_format=torch.contiguous_format)
    random_start(x, 0.1, "l2", seed=4, out=other, backend="triton")
    assert_close(other, want, what="out in another layout")
    assert other.is_contiguous()
    # not batch-major (a strided view): the kernel works on a contiguous copy
    wide = images((3, 3, 12, 20), device=device)
    view = wide[..., ::2]
    got = random_start(view, 0.1, "linf", seed=4, backend="triton")
    assert_close(got, random_start(view.contiguous(), 0.1, "linf", seed=4, backend="triton"))


def test_auto_backend_uses_reference_on_cpu():
    x = images((2, 3, 5, 5))
    eps = torch.full((2,), 0.1)
    got = random_start(x, 0.1, "l2", seed=9)
    assert_close(got, random_start_reference(x, eps, "l2", seed=9), what="auto on CPU")


@pytest.mark.parametrize("keyed", [False, True])
def test_compiled_equals_eager(keyed, device):
    x = images((3, 3, 12, 12), device=device)
    eps = eps_per_sample(3, device)
    ids = torch.tensor([40, 2, 40], device=device) if keyed else None

    def start(x0):
        return random_start(x0, eps, "l2", seed=123, ids=ids, backend="triton")

    compiled = torch.compile(start, fullgraph=True, dynamic=False)
    assert_close(compiled(x), start(x), what="compiled")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "l1"}, "norm must be one of"),
        ({"eps": torch.ones(3)}, "per-sample values"),
        ({"out": torch.empty(2, 3, 4, 5)}, "out has shape"),
        ({"seed": torch.tensor([1.5])}, "seed must be"),
        (
            {"ids": torch.arange(3)},
            r"ids must be .* shape \(2,\).*got torch.int64 with shape \(3,\)",
        ),
        ({"ids": torch.zeros(2)}, r"ids must be an integer tensor.*got torch.float32"),
        ({"ids": [0, 1]}, r"ids must be .*got list"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_input_is_named(kwargs, match, device):
    args = {"x": torch.rand(2, 3, 4, 4), "eps": 0.1, "norm": "linf", "backend": "triton"}
    args.update(kwargs)
    args = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in args.items()}
    with pytest.raises(ValueError, match=match):
        random_start(**args)


# Keyed starts (ids): sample n's start depends on (seed, ids[n], eps[n], x[n]) alone. 3x5x7
# has a tail in its one block; 3x40x35 = 4,200 elements spans two blocks, the second a tail.
KEYED_SHAPES = [(7, 3, 5, 7), (7, 3, 40, 35)]
KEYS = [10**9 + 3, 5, 17, 0, 2**40, 6, 1]


def _keyed(x: Tensor, eps: Tensor, ids: Tensor, norm: str, backend: str) -> Tensor:
    return random_start(x, eps, norm, seed=321, ids=ids, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", KEYED_SHAPES)
def test_keyed_start_is_batch_invariant(shape, norm, backend, device):
    x = images(shape, device=device)
    eps = torch.linspace(0.05, 0.4, shape[0], device=device)
    ids = torch.tensor(KEYS, device=device)
    whole = _keyed(x, eps, ids, norm, backend)
    perm = torch.tensor([3, 6, 0, 5, 1, 4, 2], device=device)
    permuted = _keyed(x[perm], eps[perm], ids[perm], norm, backend)
    assert torch.equal(permuted, whole[perm]), "a permuted batch draws other starts"
    split = [_keyed(x[s], eps[s], ids[s], norm, backend) for s in (slice(0, 3), slice(3, None))]
    assert torch.equal(torch.cat(split), whole), "a batch split in two draws other starts"
    alone = _keyed(x[4:5], eps[4:5], ids[4:5], norm, backend)
    assert torch.equal(alone, whole[4:5]), "a sample alone draws another start than in a batch"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
def test_equal_ids_scale_one_draw_by_each_budget(norm, backend, device):
    # one image at four budgets (the evaluation's repeats): the same unit draw, scaled; x = 0.5
    # and eps <= 0.1 keep the box out of the way
    x = torch.full((4, 3, 5, 7), 0.5, device=device)
    eps = torch.tensor([0.01, 0.02, 0.05, 0.1], device=device)
    ids = torch.full((4,), 12345, device=device)
    start = _keyed(x, eps, ids, norm, backend)
    assert (_distances(start, x, norm) > 0.5 * eps).all(), "no noise drawn"
    unit = (start - x).double() / eps.double().view(-1, 1, 1, 1)
    # delta = fl(0.5 + eps * w) - 0.5 is exact to 2^-24 absolute, so w to 2^-24 / eps
    for n in range(1, 4):
        assert_close(unit[n], unit[0], atol=1e-5, what=f"unit draw at eps {eps[n].item()}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", NORMS)
def test_distinct_ids_draw_distinct_noise(norm, backend, device):
    x = torch.full((2, 3, 5, 7), 0.5, device=device)
    start = random_start(
        x, 0.1, norm, seed=5, ids=torch.tensor([8, 9], device=device), backend=backend
    )
    assert (start[0] != start[1]).float().mean() > 0.9, "ids 8 and 9 share their noise"


@pytest.mark.parametrize("norm", NORMS)
def test_no_ids_means_ids_are_the_positions(norm, device):
    x = images((5, 3, 5, 7), device=device)
    got = random_start(x, 0.1, norm, seed=6, backend="triton")
    positions = torch.arange(5, dtype=torch.int32, device=device)  # any integer dtype
    assert torch.equal(got, random_start(x, 0.1, norm, seed=6, ids=positions, backend="triton"))
