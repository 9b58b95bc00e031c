"""The run's two loaders from its data config: FFCV for .beton files, the in-memory loader
for everything else. Both yield (x, y): float pixels in [0, 1] on the device, int64 labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fastrft.config import DataConfig

from .augment import Augment
from .memory import InMemoryLoader
from .sources import load_dataset


@dataclass
class Loaders:
    train: Any
    val: Any
    num_classes: int


def build_loaders(
    cfg: DataConfig,
    device: torch.device,
    *,
    seed: int = 0,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Loaders:
    augment = Augment(cfg.hflip, cfg.jitter, cfg.rotation)
    if cfg.source == "beton":
        from .ffcv_loader import FfcvLoader

        train_path, val_path = cfg.paths()
        common = {
            "device": device,
            "img_size": cfg.img_size,
            "channels_last": channels_last,
            "seed": seed,
        }
        train = FfcvLoader(
            train_path,
            cfg.batch_size,
            train=True,
            augment=augment,
            rank=rank,
            world_size=world_size,
            crop_scale=(cfg.crop_scale, 1.0),
            subset=cfg.train_images,
            **common,
        )
        val = FfcvLoader(
            val_path, cfg.eval_batch_size, train=False, subset=cfg.val_images, **common
        )
        # equal when convert recorded the classes; else each file's largest label + 1
        return Loaders(train, val, max(train.info.num_classes, val.info.num_classes))
    data = load_dataset(cfg, seed)
    train = InMemoryLoader(
        data.train.images,
        data.train.labels,
        cfg.batch_size,
        train=True,
        device=device,
        seed=seed,
        augment=augment,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
        img_size=cfg.img_size,
    )
    val = InMemoryLoader(
        data.val.images,
        data.val.labels,
        cfg.eval_batch_size,
        train=False,
        device=device,
        channels_last=channels_last,
        img_size=cfg.img_size,
    )
    return Loaders(train, val, data.num_classes)
