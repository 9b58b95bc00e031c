"""Where images come from, as uint8 tensors (N, C, H, W) with int64 labels:

toy          generated offline (fastrft.toy) at data.img_size: a quarter as many validation
             images
digits       scikit-learn's handwritten digits (1,797 grey 8x8 images shipped with it, 10
             classes), split by data.val_fraction
npz, imagefolder, cifar, idx, fashion_mnist, cub, aircraft, caltech256, imagenette, cars, dogs
             read by fastrft.data.readers, exactly as `fastrft data convert` reads them; a
             source without a split of its own is split by data.val_fraction (the
             converter's draw). Image files are resized (shorter side) and centre-cropped to
             data.img_size as they are read

Arrays keep their channels (C = 1 for grey) and, unless larger than data.img_size (then
shrunk here once), their size: the in-memory loader resizes each batch to data.img_size on
the device and gives it three channels (fastrft.data.memory), so 60,000 grey 28x28 images
hold 47 MB of device memory at any img_size. data.train_images and
data.val_images cut each split to a seeded, class-stratified draw (fastrft.data.subsets),
before any image file is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from fastrft.config import DataConfig
from fastrft.toy import toy_images

from .memory import resized
from .readers import ArraySplit, FileSplit, largest_label, load_source
from .readers import Split as SourceSplit
from .subsets import subset_indices


@dataclass
class Split:
    images: Tensor  # uint8 (N, C, H, W), C 1 or 3
    labels: Tensor  # int64 (N,)

    def subset(self, idx: np.ndarray) -> Split:
        index = torch.from_numpy(idx)
        return Split(self.images[index], self.labels[index])


S = TypeVar("S", Split, ArraySplit, FileSplit)


@dataclass
class Dataset:
    train: Split
    val: Split
    num_classes: int


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """The configured source's two splits (arrays at their own size unless larger than
    cfg.img_size, image files at cfg.img_size), cut to cfg.train_images and cfg.val_images
    where they are set."""
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
    train, val = _drawn(Split(x[n_val:], y[n_val:]), Split(x[:n_val], y[:n_val]), cfg, seed)
    return Dataset(train, val, cfg.toy_classes)


def _digits(cfg: DataConfig, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # pixel values are 0..16 (ink counts): stretch to 0..255; grey, 8x8, as the loader takes it
    x = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
    whole = Split(x, torch.from_numpy(digits.target).long())
    train_idx, val_idx = _val_draw(len(whole.labels), cfg.val_fraction, seed)
    train, val = _drawn(whole.subset(train_idx), whole.subset(val_idx), cfg, seed)
    return Dataset(train, val, num_classes=10)


def _val_draw(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a source without a split of its own, in the seeded draw's
    order (the converter's split_indices draws the same two sets, each sorted)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = max(round(fraction * n), 1)
    return order[n_val:], order[:n_val]


def _drawn(train: S, val: S, cfg: DataConfig, seed: int) -> tuple[S, S]:
    """train and val cut to cfg.train_images and cfg.val_images (0: whole)."""

    def cut(split: S, n: int, name: str) -> S:
        return split.subset(subset_indices(np.asarray(split.labels), n, seed, name)) if n else split

    return cut(train, cfg.train_images, "train"), cut(val, cfg.val_images, "val")


def _tensors(split: SourceSplit, size: int) -> tuple[Tensor, Tensor]:
    """A reader's split as uint8 (N, C, H, W) images and int64 labels: arrays as they are,
    shrunk to size x size once here when larger (less memory, the same pixels as the
    loader's resize), image files at size x size."""
    labels = torch.from_numpy(split.labels).long()
    if isinstance(split, ArraySplit):
        images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous()
        return (resized(images, size) if max(images.shape[-2:]) > size else images), labels
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
    """A source of fastrft.data.readers, read as the FFCV converter reads it."""
    (root,) = cfg.paths()
    train, val, classes = load_source(root, cfg.source)
    num_classes = len(classes) if classes else largest_label(train, val) + 1
    if val is None:  # no split of its own: the converter's seeded draw
        train_idx, val_idx = _val_draw(len(train), cfg.val_fraction, seed)
        train, val = train.subset(train_idx), train.subset(val_idx)
    train, val = _drawn(train, val, cfg, seed)
    return Dataset(
        Split(*_tensors(train, cfg.img_size)), Split(*_tensors(val, cfg.img_size)), num_classes
    )
