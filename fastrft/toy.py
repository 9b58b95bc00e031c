"""A tiny offline image task and network, for tests, examples and smoke benchmarks.

Each class is a fixed random smooth pattern; samples are the pattern plus pixel noise.
A small CNN learns it in seconds on a CPU, and like any standard-trained network it is
not robust: small l_inf perturbations flip it.
"""

from __future__ import annotations

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
