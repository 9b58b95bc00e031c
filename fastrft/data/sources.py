"""Where images come from, as uint8 tensors (N, C, H, W) with int64 labels:

toy          generated offline (fastrft.toy): a quarter as many validation images
digits       scikit-learn's handwritten digits (1,797 grey 8x8 images shipped with it, 10
             classes): upscaled to data.img_size, grey in 3 channels, split by
             data.val_fraction
npz, imagefolder, cifar, cub, aircraft, caltech256, imagenette, cars, dogs
             read by fastrft.data.readers, exactly as `fastrft data convert` reads them; a
             source without a split of its own is split by data.val_fraction (the
             converter's draw). Image files are resized (shorter side) and centre-cropped to
             data.img_size, arrays resized to it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fastrft.config import DataConfig
from fastrft.toy import toy_images

from .readers import ArraySplit, largest_label, load_source
from .readers import Split as SourceSplit


@dataclass
class Split:
    images: Tensor  # uint8 (N, C, H, W)
    labels: Tensor  # int64 (N,)


@dataclass
class Dataset:
    train: Split
    val: Split
    num_classes: int


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """The configured source, both splits, at cfg.img_size."""
    loader = {"toy": _toy, "digits": _digits}.get(cfg.source, _from_reader)
    data = loader(cfg, seed)
    for name, split in (("train", data.train), ("val", data.val)):
        bad = (split.labels < 0) | (split.labels >= data.num_classes)
        if bad.any():
            raise ValueError(
                f"{cfg.source} {name} split: label {int(split.labels[bad][0])} is "
                f"outside [0, {data.num_classes})"
            )
    return data


def _toy(cfg: DataConfig, seed: int) -> Dataset:
    n_val = max(cfg.toy_samples // 4, 1)
    x, y = toy_images(
        cfg.toy_samples + n_val, classes=cfg.toy_classes, size=cfg.img_size, seed=seed
    )
    x = (x * 255).round().to(torch.uint8)
    return Dataset(Split(x[n_val:], y[n_val:]), Split(x[:n_val], y[:n_val]), cfg.toy_classes)


def _digits(cfg: DataConfig, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # pixel values are 0..16 (ink counts): stretch to 0..255, then up to the model's size
    x = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8)
    x = _resize(x.unsqueeze(1), cfg.img_size).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(digits.target).long()
    return Dataset(*_split(x, y, cfg.val_fraction, seed), num_classes=10)


def _split(x: Tensor, y: Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = max(round(fraction * len(y)), 1)
    return Split(x[order[n_val:]], y[order[n_val:]]), Split(x[order[:n_val]], y[order[:n_val]])


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


def _tensors(split: SourceSplit, size: int) -> tuple[Tensor, Tensor]:
    """A reader's split as uint8 (N, C, H, W) images at size x size, and int64 labels."""
    labels = torch.from_numpy(split.labels).long()
    if isinstance(split, ArraySplit):
        images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous()
        return _resize(images, size), labels
    return torch.stack([_read_image(path, size) for path in split.paths]), labels


def _read_image(path: Path, size: int) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = size / min(im.size)
            im = im.resize(
                (max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                Image.BILINEAR,
            )
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    except OSError as err:
        raise ValueError(f"{path}: unreadable image ({err})") from err


def _from_reader(cfg: DataConfig, seed: int) -> Dataset:
    """npz, imagefolder, cifar or a named layout, read as the FFCV converter reads it."""
    train, val, classes = load_source(Path(cfg.root), cfg.source)
    num_classes = len(classes) if classes else largest_label(train, val) + 1
    x, y = _tensors(train, cfg.img_size)
    if val is None:  # no split of its own: the converter's seeded draw
        return Dataset(*_split(x, y, cfg.val_fraction, seed), num_classes)
    return Dataset(Split(x, y), Split(*_tensors(val, cfg.img_size)), num_classes)
