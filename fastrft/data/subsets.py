"""A seeded, class-stratified draw of a fixed number of a split's images (data.train_images,
data.val_images): the same draw for the in-memory sources and for .beton files.

Each class gets an equal share; a class with fewer images than its share gives the rest to
the others, and what does not divide evenly goes one image each to classes picked by the draw. The
draw is a function of (seed, split, labels) alone, so a resumed run and its evaluation see the
same images; train and val are drawn with different streams.

An evaluation shared by several processes splits its images into contiguous shards
(:func:`eval_shard`), one per rank, each evaluated in order: an image's index in the split is
then its shard's start plus its place in it, whatever the number of processes.
"""

from __future__ import annotations

import numpy as np

_STREAMS = {"train": 1, "val": 2}


def class_quotas(counts: np.ndarray, n: int, order: np.ndarray) -> np.ndarray:
    """Images to take of each class, summing to n <= counts.sum(): min(count, t) for the
    largest level t that fits, then one more for the first classes in ``order`` with room."""
    lo, hi = 0, int(counts.max(initial=0))
    while lo < hi:  # the largest t with sum(min(counts, t)) <= n
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(counts, mid).sum() <= n else (lo, mid - 1)
    quota = np.minimum(counts, lo)
    room = [c for c in order if counts[c] > lo][: n - int(quota.sum())]
    quota[room] += 1
    return quota


def subset_indices(labels: np.ndarray, n: int, seed: int, split: str) -> np.ndarray:
    """Sorted indices of n of ``labels``' samples, stratified by class; all of them for n = 0.
    ValueError when n exceeds the split's size."""
    if n == 0:
        return np.arange(len(labels))
    if n > len(labels):
        raise ValueError(
            f"data.{split}_images={n} is more than the {len(labels)} images of the {split} "
            f"split: lower it (0 takes them all)"
        )
    rng = np.random.default_rng([_STREAMS[split], seed % 2**63])
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = class_quotas(counts, n, rng.permutation(len(classes)))
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    picked = [rng.choice(m, q, replace=False) for m, q in zip(members, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def eval_shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` evaluation images: n // world_size of them,
    one more for the last n % world_size ranks, so the shards cover 0..n-1 once, in order
    (unlike training's shards, never padded: evaluation counts each image once)."""
    return slice(rank * n // world_size, (rank + 1) * n // world_size)
