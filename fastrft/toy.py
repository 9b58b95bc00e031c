"""Generated image tasks, offline: a tiny task and network for tests, examples and smoke
benchmarks, and the stroke glyphs the demo pretrains its backbone on.

In the tiny task each class is a fixed random smooth pattern; samples are the pattern plus
pixel noise. A small CNN learns it in seconds on a CPU, and like any standard-trained network
it is not robust: small l_inf perturbations flip it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def toy_images(
    n: int,
    classes: int = 10,
    size: int = 16,
    channels: int = 3,
    contrast: float = 0.2,
    noise: float = 0.2,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """n images (n, channels, size, size) in [0, 1] and their labels, reproducible by seed.

    Class patterns differ by ``contrast`` around mid-grey under pixel ``noise``: a network
    must pool many pixels to tell them apart, which is what makes it easy to attack."""
    g = torch.Generator().manual_seed(seed)
    coarse = 0.5 + contrast * (2 * torch.rand(classes, channels, 4, 4, generator=g) - 1)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.randint(0, classes, (n,), generator=g)
    x = prototypes[y] + noise * torch.randn(n, channels, size, size, generator=g)
    return x.clamp(0, 1), y


@dataclass(frozen=True)
class Glyphs:
    """The pretraining task: each class a fixed random set of line strokes, each image one
    drawn with a random rotation, scale, shift, stroke width, ink level and pixel noise:
    ink on black as in the digits, but other shapes."""

    classes: int = 32
    samples: int = 4000
    strokes: int = 3
    version: int = 1  # bump when the drawing changes, so cached backbones are redrawn


def glyph_images(task: Glyphs, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``task.samples`` images, uint8 (N, 3, size, size) grey in 3 channels, and labels."""
    g = torch.Generator().manual_seed(seed)
    n, k = task.samples, task.strokes
    prototypes = 0.15 + 0.7 * torch.rand(task.classes, k, 2, 2, generator=g)  # ends, xy
    y = torch.randint(0, task.classes, (n,), generator=g)
    ends = prototypes[y] + 0.04 * torch.randn(n, k, 2, 2, generator=g)
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(30)
    scale = 0.85 + 0.3 * torch.rand(n, generator=g)
    shift = 0.1 * (2 * torch.rand(n, 2, generator=g) - 1)
    cos, sin = angle.cos() * scale, angle.sin() * scale
    affine = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    ends = torch.einsum("nij,nsej->nsei", affine, ends - 0.5) + 0.5 + shift[:, None, None]
    a, ab = ends[:, :, :1], ends[:, :, 1:] - ends[:, :, :1]  # (n, k, 1, 2)
    centres = (torch.arange(size) + 0.5) / size
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    q = torch.stack([xx, yy], -1).view(1, 1, size * size, 2)
    # distance from each pixel centre to each stroke (a segment)
    t = (((q - a) * ab).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-8)).clamp(0, 1)
    dist = (q - a - t[..., None] * ab).norm(dim=-1)
    half_width = 0.03 + 0.03 * torch.rand(n, 1, 1, generator=g)
    ink = (1 - (dist - half_width) * size).clamp(0, 1).amax(1)  # edges one pixel soft
    level = 0.6 + 0.4 * torch.rand(n, 1, generator=g)
    x = (ink * level + 0.05 * torch.randn(n, size * size, generator=g)).clamp(0, 1)
    x = (255 * x).round().to(torch.uint8).view(n, 1, size, size).expand(-1, 3, -1, -1)
    return x.numpy(), y.numpy()


class TinyCNN(nn.Module):
    """conv-bn-relu x2, global pooling, linear: BatchNorm makes train/eval mode matter."""

    def __init__(self, classes: int = 10, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_toy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
) -> nn.Module:
    """Plain (non-robust) training with Adam; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` as it is (its mode is not changed)."""
    return (model(x).argmax(1) == y).float().mean().item()
