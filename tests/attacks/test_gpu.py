"""On a GPU: the attacks run on the fused kernels, match the torch references, work on a
bf16 channels_last model, and the whole APGD attack captures into one CUDA graph."""

import pytest
import torch

from fastrft.attacks import apgd, pgd
from fastrft.toy import TinyCNN, accuracy, toy_images, train_toy
from tests.helpers import assert_same_trajectory

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_trained():
    torch.manual_seed(0)
    x, y = toy_images(2560, seed=0)
    model = train_toy(TinyCNN(), x[:2048], y[:2048], epochs=8)
    return model.cuda(), x[2048:].cuda(), y[2048:].cuda()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_kernels_follow_the_reference_trajectory(cuda_trained, attack, norm):
    model, x, y = cuda_trained
    eps = 4 / 255 if norm == "linf" else 0.3
    fn = {"pgd": pgd, "apgd": apgd}[attack]
    fused = fn(model, x, y, eps, steps=5, norm=norm, random_start=False, backend="auto")
    ref = fn(model, x, y, eps, steps=5, norm=norm, random_start=False, backend="torch")
    assert_same_trajectory(fused, ref, norm, what=f"{attack} {norm} on CUDA")


def test_bf16_channels_last_model(cuda_trained):
    model, x, y = cuda_trained
    x_cl = x.contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    ref = accuracy(model, apgd(model, x, y, 4 / 255), y)
    torch.manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        x_adv = apgd(model, x_cl, y, 4 / 255)
    assert x_adv.is_contiguous(memory_format=torch.channels_last)
    assert abs(accuracy(model, x_adv, y) - ref) <= 0.01


def test_apgd_captures_into_one_cuda_graph(cuda_trained):
    model, x, y = cuda_trained
    eps = torch.full((len(x),), 4 / 255, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: allocator pools, cuBLAS/cuDNN handles, Triton JIT
            apgd(model, x, y, eps, steps=7, validate=False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x_adv = apgd(model, x, y, eps, steps=7, validate=False)
    accs = []
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        assert ((x_adv - x).abs().amax() <= 4 / 255 + 1e-6) and x_adv.min() >= 0
        accs.append(accuracy(model, x_adv, y))
    eager = accuracy(model, apgd(model, x, y, eps, steps=7), y)
    assert max(abs(a - eager) for a in accs) <= 0.03, (accs, eager)


@pytest.mark.parametrize("best", ["loss", "adversarial"])
def test_apgd_under_inference_mode_on_the_fused_kernels(cuda_trained, best):
    """The evaluation-loop pattern on the GPU: inputs made in inference mode, attacked there."""
    model, x, y = cuda_trained
    expected = apgd(model, x, y, 4 / 255, steps=5, random_start=False, best=best)
    with torch.inference_mode():
        got = apgd(model, x.clone(), y.clone(), 4 / 255, steps=5, random_start=False, best=best)
    assert not got.is_inference()
    assert_same_trajectory(got, expected, "linf", what=f"apgd best={best} under inference_mode")
