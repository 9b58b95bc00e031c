"""Batched augmentation on the device, after the loader: the paper's horizontal flip
(p = 0.5), colour jitter (brightness, contrast, saturation) and a small random rotation.

Each sample draws its own parameters from torch's generator on the batch's device, so a
seeded run is reproducible and a resumed run continues the same stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _per_sample(n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    return torch.empty(n, 1, 1, 1, device=device).uniform_(lo, hi)


def grey(x: Tensor) -> Tensor:
    """Luma of RGB images (N, 3, H, W) -> (N, 1, H, W); single-channel images pass through."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    # weights as Python scalars: a tensor made from them would be a host-to-device copy
    # (and a sync) on every batch
    r, g, b = GREY
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


def hflip(x: Tensor, p: float = 0.5) -> Tensor:
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(flip, x.flip(3), x)


def jitter(x: Tensor, strength: float) -> Tensor:
    """Brightness, contrast, then saturation, each factor ~ U[1 - s, 1 + s] per sample."""
    n, lo, hi = x.shape[0], max(0.0, 1 - strength), 1 + strength
    x = (x * _per_sample(n, lo, hi, x.device)).clamp(0, 1)
    mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * _per_sample(n, lo, hi, x.device) + mean).clamp(0, 1)
    g = grey(x)
    return ((x - g) * _per_sample(n, lo, hi, x.device) + g).clamp(0, 1)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotation by ~ U[-degrees, degrees] per sample about the centre; corners filled with 0."""
    angle = torch.empty(x.shape[0], device=x.device).uniform_(-degrees, degrees) * math.pi / 180
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class Augment:
    """The training augmentation; each part off when its setting is False or 0."""

    flip: bool = True
    jitter: float = 0.25
    rotation: float = 2.0

    def __call__(self, x: Tensor) -> Tensor:
        if self.flip:
            x = hflip(x)
        if self.jitter > 0:
            x = jitter(x, self.jitter)
        if self.rotation > 0:
            x = rotate(x, self.rotation)
        return x
