"""Where images come from, as uint8 tensors (N, C, H, W) with int64 labels:

toy          generated offline (fastrft.toy): a quarter as many validation images
digits       scikit-learn's handwritten digits (1,797 grey 8x8 images shipped with it, 10
             classes): upscaled to data.img_size, grey in 3 channels, split by
             data.val_fraction
npz          x_train/y_train (+ x_val/y_val), or images/labels split by data.val_fraction;
             images uint8, NHWC or NCHW
imagefolder  ROOT/train/<class>/*, ROOT/val/<class>/* (or ROOT/<class>/* split by
             data.val_fraction); resized (shorter side) and centre-cropped to data.img_size
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

from .layouts import IMAGE_SUFFIXES


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
    loader = {"toy": _toy, "digits": _digits, "npz": _npz, "imagefolder": _imagefolder}[cfg.source]
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


def _as_nchw_uint8(a: np.ndarray, path: str, size: int) -> Tensor:
    if a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(
            f"{path}: images must be uint8 (N, H, W, C) or (N, C, H, W), got {a.dtype} {a.shape}"
        )
    t = torch.from_numpy(a)
    if t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2)
    return _resize(t.contiguous(), size)


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


def _npz(cfg: DataConfig, seed: int) -> Dataset:
    path = cfg.root
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err

    def pick(*keys: str) -> list[np.ndarray] | None:
        return [arrays[k] for k in keys] if all(k in arrays for k in keys) else None

    if (both := pick("x_train", "y_train", "x_val", "y_val")) is not None:
        xt, yt, xv, yv = both
        train = Split(_as_nchw_uint8(xt, path, cfg.img_size), torch.from_numpy(yt).long())
        val = Split(_as_nchw_uint8(xv, path, cfg.img_size), torch.from_numpy(yv).long())
    elif (one := pick("images", "labels")) is not None:
        x = _as_nchw_uint8(one[0], path, cfg.img_size)
        train, val = _split(x, torch.from_numpy(one[1]).long(), cfg.val_fraction, seed)
    else:
        raise ValueError(
            f"{path}: expected arrays x_train, y_train, x_val, y_val or images, "
            f"labels; found {sorted(arrays)}"
        )
    labels = torch.cat([train.labels, val.labels])
    return Dataset(train, val, int(labels.max()) + 1)


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise ValueError(f"{root}: no class folders (expected ROOT/<class>/<image files>)")
    return dirs


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


def _read_tree(root: Path, classes: list[str], size: int) -> Split:
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        files = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not files:
            raise ValueError(f"{folder}: class folder is missing or holds no images")
        images += [_read_image(p, size) for p in files]
        labels += [label] * len(files)
    return Split(torch.stack(images), torch.tensor(labels))


def _imagefolder(cfg: DataConfig, seed: int) -> Dataset:
    root = Path(cfg.root)
    if (root / "train").is_dir():
        classes = [p.name for p in _class_dirs(root / "train")]
        train = _read_tree(root / "train", classes, cfg.img_size)
        if not (root / "val").is_dir():
            raise ValueError(f"{root}: has train/ but no val/ folder")
        val = _read_tree(root / "val", classes, cfg.img_size)
    else:
        classes = [p.name for p in _class_dirs(root)]
        train, val = _split(
            *vars(_read_tree(root, classes, cfg.img_size)).values(), cfg.val_fraction, seed
        )
    return Dataset(train, val, len(classes))
