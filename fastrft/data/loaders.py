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
    data = None if cfg.source == "beton" else load_dataset(cfg, seed)
    common = {"seed": seed, "channels_last": channels_last, "data": data}
    train = _split_loader(cfg, device, True, rank=rank, world_size=world_size, **common)
    val = _split_loader(cfg, device, False, rank=0, world_size=1, **common)
    if data is not None:
        return Loaders(train, val, data.num_classes)
    # equal when convert recorded the classes; else each file's largest label + 1
    return Loaders(train, val, max(train.info.num_classes, val.info.num_classes))


def build_eval_loader(
    cfg: DataConfig,
    device: torch.device,
    *,
    seed: int = 0,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Any:
    """The validation split's loader, every image once in order; with ``world_size`` > 1, this
    rank's contiguous run of them from ``first_index`` (an evaluation the ranks share, summing
    their counts)."""
    data = None if cfg.source == "beton" else load_dataset(cfg, seed)
    return _split_loader(
        cfg,
        device,
        False,
        seed=seed,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
        data=data,
    )


def _split_loader(
    cfg: DataConfig,
    device: torch.device,
    train: bool,
    *,
    seed: int,
    channels_last: bool,
    rank: int,
    world_size: int,
    data: Dataset | None,
) -> Any:
    """One split's loader: training's (shuffled, augmented, shards padded to one length) or
    validation's (in order, shards contiguous); FFCV's for .beton files, else over ``data``."""
    shard = {
        "device": device,
        "seed": seed,
        "channels_last": channels_last,
        "rank": rank,
        "world_size": world_size,
        "augment": Augment(cfg.hflip, cfg.jitter, cfg.rotation) if train else None,
    }
    batch = cfg.batch_size if train else cfg.eval_batch_size
    if data is None:
        from .ffcv_loader import FfcvLoader

        train_path, val_path = cfg.paths()
        return FfcvLoader(
            train_path if train else val_path,
            batch,
            train=train,
            img_size=cfg.img_size,
            subset=cfg.train_images if train else cfg.val_images,
            **({"crop_scale": (cfg.crop_scale, 1.0)} if train else {}),
            **shard,
        )
    split = data.train if train else data.val
    return InMemoryLoader(
        split.images, split.labels, batch, train=train, img_size=cfg.img_size, **shard
    )
