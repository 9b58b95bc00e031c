"""data.train_images / data.val_images: seeded, class-stratified subsets of each split."""

import numpy as np
import pytest
import torch

from fastrft.config import ConfigError, DataConfig
from fastrft.data import load_dataset
from fastrft.data.subsets import class_quotas, subset_indices
from tests.data.test_idx import make_idx


def test_quotas_are_equal_shares_with_the_remainder_spread_and_small_classes_capped():
    counts, order = np.array([50, 50, 50, 50]), np.array([2, 0, 3, 1])
    assert class_quotas(counts, 10, order).tolist() == [3, 2, 3, 2]  # 2 each, +1 for 2 and 0
    assert class_quotas(np.array([1, 50, 3, 50]), 20, order).tolist() == [1, 8, 3, 8]
    assert class_quotas(np.array([1, 2, 3]), 6, np.arange(3)).tolist() == [1, 2, 3]


def test_the_draw_is_stratified_sorted_seeded_and_per_split():
    labels = np.repeat(np.arange(5), [40, 30, 20, 10, 3])
    idx = subset_indices(labels, 23, seed=0, split="train")
    assert len(idx) == 23 and len(set(idx)) == 23 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.tolist() == [5, 5, 5, 5, 3]  # the 3-image class gives its share away
    assert np.array_equal(idx, subset_indices(labels, 23, seed=0, split="train"))  # resume
    assert not np.array_equal(idx, subset_indices(labels, 23, seed=1, split="train"))
    assert not np.array_equal(idx, subset_indices(labels, 23, seed=0, split="val"))
    counts = np.bincount(labels[subset_indices(labels, 40, seed=0, split="val")])
    assert sorted(counts) == [3, 9, 9, 9, 10]  # 9 each, the one left to a drawn class
    assert np.array_equal(subset_indices(labels, 0, seed=0, split="val"), np.arange(103))
    assert len(subset_indices(labels, 103, seed=5, split="val")) == 103
    with pytest.raises(ValueError, match=r"data.train_images=104 is more than the 103 images"):
        subset_indices(labels, 104, seed=0, split="train")


def test_every_in_memory_source_is_cut_the_same_way_twice(tmp_path):
    make_idx(tmp_path / "d", n_train=30, n_val=12)
    cfg = DataConfig(source="idx", root=str(tmp_path / "d"), train_images=9, val_images=6)
    data = load_dataset(cfg, seed=4)
    assert len(data.train.labels) == 9 and len(data.val.labels) == 6
    assert torch.bincount(data.train.labels).tolist() == [3, 3, 3]
    again, other = load_dataset(cfg, seed=4), load_dataset(cfg, seed=5)
    assert torch.equal(again.train.images, data.train.images)
    assert torch.equal(again.val.images, data.val.images)
    assert not torch.equal(other.train.images, data.train.images)

    digits = DataConfig(source="digits", train_images=100, val_images=50)
    data = load_dataset(digits, seed=0)
    assert (len(data.train.labels), len(data.val.labels)) == (100, 50)
    assert torch.bincount(data.train.labels).tolist() == [10] * 10
    whole = load_dataset(DataConfig(source="digits"), seed=0)  # drawn from the same split
    val = {bytes(x.numpy()) for x in whole.val.images}
    assert all(bytes(x.numpy()) in val for x in data.val.images)
    toy = load_dataset(DataConfig(source="toy", toy_samples=64, train_images=20), seed=0)
    assert len(toy.train.labels) == 20 and len(toy.val.labels) == 16


def test_a_subset_larger_than_the_split_or_negative_is_refused(tmp_path):
    make_idx(tmp_path / "d")
    cfg = DataConfig(source="idx", root=str(tmp_path / "d"), val_images=5)
    with pytest.raises(ValueError, match=r"data.val_images=5 is more than the 4 images"):
        load_dataset(cfg)
    with pytest.raises(ConfigError, match=r"data.train_images: must be >= 0"):
        DataConfig(train_images=-1)
