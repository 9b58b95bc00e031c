"""The FFCV loader: .beton files decoded by FFCV's own pipeline, augmented on the device.

Same interface and semantics as :class:`fastrft.data.memory.InMemoryLoader`: iterate (x, y)
with x float32 pixels in [0, 1] (N, 3, img_size, img_size) and y int64 labels, on ``device``;
``len()``, ``set_epoch(epoch)``, ``num_samples``; ``info`` (:class:`BetonInfo`) describes the
file. Opening one reads its header and label column (no image): a truncated file or a label
outside [0, num_classes) is a ValueError naming the file, never a wrong label. num_classes is
the count `fastrft data convert` records beside the file (STEM.classes.json); without that
record it is the largest label + 1, so only a negative label can be caught.

FFCV 1.0.2 is unmaintained and its numba-compiled pipelines accept only its own operations, so
the pipeline stops at uint8 NCHW on the device and the rest happens here, in torch:

- image: a decoder that crops and resizes to ``img_size`` (training:
  ``RandomResizedCropRGBImageDecoder`` with scale ``crop_scale``, default (0.64, 1), i.e. at
  least 80% of the side; evaluation: ``CenterCropRGBImageDecoder`` with ratio 1, which gives
  raw images of exactly ``img_size`` back unchanged), ToTensor, ToDevice, ToTorchImage;
  then ``.float() / 255``, the ``augment`` (training only) and channels_last if asked.
  Both decoders use aspect ratio 1, so every output is exactly img_size x img_size.
- label: IntDecoder, ToTensor, ToDevice, then flattened to (N,) int64. (FFCV's Squeeze
  before ToDevice made a last batch of one image 0-d, which ToDevice fails on in FFCV's
  thread, and the loop then waited for ever.)

Order and sharding:

- Training: ``OrderOption.RANDOM``, ``drop_last=True`` (static shapes). FFCV draws the order
  of an epoch from ``numpy.random.default_rng(seed + epoch)``; ``set_epoch`` sets FFCV's epoch
  counter, so the order is a function of (seed, epoch) and a resumed run reproduces it. Note
  that FFCV only uses the sum: (seed, epoch + 1) gives the same order as (seed + 1, epoch).
  The random crops are drawn inside numba from its own generator and are *not* reproducible
  from (seed, epoch); only the order is.
- ``world_size > 1``: FFCV's ``distributed=True``, which shards with torch's
  ``DistributedSampler`` (``shuffle=True, seed=seed, drop_last=False``; epoch from
  ``set_epoch``), reading rank and world size from ``torch.distributed``, which must be
  initialised (tested with two gloo processes under torchrun: disjoint shards per epoch).
  It pads the shards with repeated samples to equal lengths, as the in-memory loader does, so
  every rank makes as many steps.
- A sharded evaluation loader (``train=False``, ``world_size > 1``) reads its rank's
  contiguous run of the images (fastrft.data.subsets.eval_shard), unpadded, through
  ``indices=``; ``first_index`` is the run's start.
- Evaluation: ``OrderOption.SEQUENTIAL``, ``drop_last=False``: every image once, in order.
- ``subset=n`` reads only n of the file's images (FFCV's ``indices=``): the seeded,
  class-stratified draw of fastrft.data.subsets from the labels in the file's metadata, the
  same draw the in-memory sources make (data.train_images, data.val_images).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .subsets import eval_shard, subset_indices

TRAIN_CROP_SCALE = (0.64, 1.0)


def ffcv_available() -> bool:
    """True when ``import ffcv`` works (it needs OpenCV and libturbojpeg)."""
    try:
        import ffcv  # noqa: F401
    except ImportError:
        return False
    return True


def _fields(reader: Any, path: Path) -> tuple[str, str]:
    """Names of the (RGBImageField, IntField) pair in the file."""
    from ffcv.fields import IntField, RGBImageField

    images = [n for n, h in reader.handlers.items() if isinstance(h, RGBImageField)]
    labels = [n for n, h in reader.handlers.items() if isinstance(h, IntField)]
    if len(images) != 1 or len(labels) != 1:
        raise ValueError(
            f"{path}: expected one RGBImageField and one IntField, "
            f"got {dict(zip(reader.handlers, map(type, reader.handlers.values()), strict=True))}"
        )
    return images[0], labels[0]


class FfcvLoader:
    """Yields (x, y): x float pixels in [0, 1] (N, 3, S, S), y int64 labels, on ``device``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_size: int,
        *,
        train: bool,
        device: torch.device,
        img_size: int,
        seed: int = 0,
        augment: Callable[[Tensor], Tensor] | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 2,
        crop_scale: tuple[float, float] = TRAIN_CROP_SCALE,
        subset: int = 0,
    ) -> None:
        from .convert import beton_info, read_beton, require_ffcv

        require_ffcv()  # a missing FFCV says how to install it, before any file is read

        self.path = Path(path)
        self.info = beton_info(self.path)  # a bad file or a label outside [0, C) raises here
        if self.info.num_samples == 0:
            raise ValueError(f"{self.path}: the .beton file holds no samples")
        self.batch_size, self.train, self.device = batch_size, train, torch.device(device)
        self.img_size, self.seed, self.augment = img_size, seed, augment
        self.channels_last, self.rank, self.world_size = channels_last, rank, world_size
        self.workers, self.crop_scale = workers, crop_scale
        reader = read_beton(self.path)
        self._fields = _fields(reader, self.path)
        indices, self.first_index = self._shard(self._subset(reader, subset))
        self._loader = self._build(indices)
        self.epoch = 0
        if train and len(self._loader) == 0:
            raise ValueError(
                f"{self.num_samples} training images per process in {self.path} are fewer "
                f"than one batch of {batch_size}: lower data.batch_size"
            )

    def _pipelines(self) -> dict[str, list[Any]]:
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import (
            CenterCropRGBImageDecoder,
            RandomResizedCropRGBImageDecoder,
        )
        from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

        size = (self.img_size, self.img_size)
        if self.train:
            decoder = RandomResizedCropRGBImageDecoder(size, scale=self.crop_scale, ratio=(1, 1))
        else:
            decoder = CenterCropRGBImageDecoder(size, ratio=1.0)
        image, label = self._fields
        return {
            image: [
                decoder,
                ToTensor(),
                ToDevice(self.device, non_blocking=True),
                ToTorchImage(channels_last=self.channels_last),
            ],
            label: [IntDecoder(), ToTensor(), ToDevice(self.device, non_blocking=True)],
        }

    def _subset(self, reader: Any, n: int) -> np.ndarray | None:
        """The indices of the ``subset=n`` draw (see the module docstring); None for all."""
        if n == 0:
            return None
        from ffcv.fields import IntField

        from .convert import field_column

        labels = np.asarray(reader.metadata[field_column(reader, IntField, self.path)])
        return subset_indices(labels, n, self.seed, "train" if self.train else "val")

    def _shard(self, indices: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        """An evaluation loader's share of ``indices`` (None: every image) and the index of
        its first image among them; training loaders are sharded by FFCV."""
        if self.train or self.world_size == 1:
            return indices, 0
        every = np.arange(self.info.num_samples) if indices is None else indices
        share = eval_shard(len(every), self.rank, self.world_size)
        return every[share], share.start

    def _build(self, indices: np.ndarray | None) -> Any:
        from ffcv.loader import Loader, OrderOption

        return Loader(
            str(self.path),
            batch_size=self.batch_size,
            num_workers=self.workers,
            order=OrderOption.RANDOM if self.train else OrderOption.SEQUENTIAL,
            distributed=self.train and self.world_size > 1,
            seed=self.seed,
            pipelines=self._pipelines(),
            drop_last=self.train,
            indices=indices,
        )

    def set_epoch(self, epoch: int) -> None:
        """The order of each epoch is a function of (seed, epoch): resuming reproduces it."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._loader)

    def _image_first(self) -> bool:
        """FFCV yields fields in file order; True when the image field comes first."""
        names = list(self._loader.reader.handlers)
        return names.index(self._fields[0]) < names.index(self._fields[1])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self._loader.next_epoch = self.epoch
        image_first = self._image_first()
        epoch = iter(self._loader)  # FFCV's EpochIterator: a thread that fills a queue
        try:
            for a, b in epoch:
                images, labels = (a, b) if image_first else (b, a)
                # FFCV reuses its buffers a few batches on: a copy keeps a kept batch's labels
                yield self._images(images), labels.reshape(-1).to(torch.int64, copy=True)
        finally:
            # stop and join the thread, also when the consumer stops early: a thread left
            # running beside the main one can trip CPython 3.11.7's AST recursion-depth check
            epoch.close()
            epoch.join(timeout=10)

    def _images(self, images: Tensor) -> Tensor:
        x = images.float().div_(255)
        if self.train and self.augment is not None:
            x = self.augment(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def num_samples(self) -> int:
        """Samples this process visits per epoch (its shard when distributed)."""
        order = self._loader.first_traversal_order
        return int(np.asarray(order).shape[0])
