"""The in-memory loader: the whole uint8 dataset on the device, batches cut by index.

For small sets (and machines without FFCV): no worker processes, no host-to-device copies in
the loop. Training batches are shuffled per epoch from (seed, epoch), have a static shape
(drop_last, so CUDA graphs can replay) and are sharded across DDP ranks as the FFCV loader
shards them (torch's DistributedSampler with drop_last=False): the epoch's order is padded by
wrapping around to ceil(n / world_size) images per rank, so every rank makes the same number
of steps (DDP's collectives wait for all ranks) and every image is in some rank's shard.
Evaluation batches follow the images' order; sharded, each rank takes its contiguous run of
the images (fastrft.data.subsets.eval_shard), unpadded, starting at ``first_index``.

Images are kept as the source gives them (grey in one channel, at their own size); each batch
becomes three channels at ``img_size`` on the device, before augmentation (see ``pixels``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .subsets import eval_shard


def resized(images: Tensor, size: int) -> Tensor:
    """uint8 images (N, C, h, w) at size x size: bilinear, antialiased, rounded to uint8
    levels; the images themselves when they are that size already."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.round_().clamp_(0, 255).to(torch.uint8)


def pixels(batch: Tensor, size: int | None) -> Tensor:
    """uint8 images (N, 1 or 3, h, w) as float RGB pixels in [0, 1] (N, 3, size, size; their
    own size for None): ``resized``, as resizing the stored images once at load did, so
    moving the resize onto each batch changed no pixel on the CPU; grey repeated to 3
    channels."""
    x = (batch if size is None else resized(batch, size)).float().div_(255)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


class InMemoryLoader:
    """Yields (x, y): x float RGB pixels in [0, 1] (N, 3, img_size, img_size; the images' own
    size when img_size is None), y int64 labels, on ``device``."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        train: bool,
        device: torch.device,
        seed: int = 0,
        augment: Callable[[Tensor], Tensor] | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        img_size: int | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                "images must be uint8 (N, C, H, W) with C 1 or 3, got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.batch_size, self.train, self.device = batch_size, train, device
        self.seed, self.augment, self.channels_last = seed, augment, channels_last
        self.rank, self.world_size, self.img_size = rank, world_size, img_size
        self.epoch = 0
        if train and len(self._indices()) < batch_size:
            raise ValueError(
                f"{len(self._indices())} training images per process are fewer "
                f"than one batch of {batch_size}: lower data.batch_size"
            )

    def set_epoch(self, epoch: int) -> None:
        """The shuffle of each epoch is a function of (seed, epoch): resuming reproduces it."""
        self.epoch = epoch

    def _indices(self) -> Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(n)[eval_shard(n, self.rank, self.world_size)]
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g)
        padded = -(-n // self.world_size) * self.world_size
        order = order.repeat(-(-padded // max(n, 1)))[:padded]  # wraps, as DistributedSampler
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._indices().to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = pixels(self.images[idx], self.img_size)
            if self.augment is not None:
                x = self.augment(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

    @property
    def num_samples(self) -> int:
        return len(self._indices())

    @property
    def first_index(self) -> int:
        """The index in the split of this process's first evaluation image (0 unsharded)."""
        return 0 if self.train else eval_shard(len(self.labels), self.rank, self.world_size).start
