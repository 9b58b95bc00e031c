"""The run's two loaders from its data config: FFCV for .beton files, the in-memory loader
for everything else. Both yield (x, y): float pixels in [0, 1] on the device, int64 labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fastrft.config import DataConfig

from .augment import Augment
from .memory import InMemoryLoader
from .sources import Dataset, load_dataset


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
    """Training's loader, sharded across ``world_size`` ranks, and the validation loader,
    which every rank reads whole."""
    augment = Augment(cfg.hflip, cfg.jitter, cfg.rotation)
    if cfg.source == "beton":
        from .ffcv_loader import FfcvLoader

        train_path, _ = cfg.paths()
        train = FfcvLoader(
            train_path,
            cfg.batch_size,
            train=True,
            device=device,
            img_size=cfg.img_size,
            channels_last=channels_last,
            seed=seed,
            augment=augment,
            rank=rank,
            world_size=world_size,
            crop_scale=(cfg.crop_scale, 1.0),
            subset=cfg.train_images,
        )
        val = build_eval_loader(cfg, device, seed=seed, channels_last=channels_last)
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
    val = build_eval_loader(cfg, device, seed=seed, channels_last=channels_last, data=data)
    return Loaders(train, val, data.num_classes)


def build_eval_loader(
    cfg: DataConfig,
    device: torch.device,
    *,
    seed: int = 0,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    data: Dataset | None = None,
) -> Any:
    """The validation split's loader, every image once in order; with ``world_size`` > 1, this
    rank's contiguous run of them from ``first_index`` (an evaluation the ranks share, summing
    their counts). ``data``: the in-memory source, when already loaded."""
    if cfg.source == "beton":
        from .ffcv_loader import FfcvLoader

        _, val_path = cfg.paths()
        return FfcvLoader(
            val_path,
            cfg.eval_batch_size,
            train=False,
            device=device,
            img_size=cfg.img_size,
            channels_last=channels_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
            subset=cfg.val_images,
        )
    data = data or load_dataset(cfg, seed)
    return InMemoryLoader(
        data.val.images,
        data.val.labels,
        cfg.eval_batch_size,
        train=False,
        device=device,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
        img_size=cfg.img_size,
    )
