"""The in-memory loader and the device-side augmentation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from fastrft.config import DataConfig
from fastrft.data import Augment, InMemoryLoader, load_dataset
from fastrft.data.augment import grey, hflip, jitter, rotate


def _loader(n=37, batch=8, train=True, **kw):
    images = torch.randint(0, 256, (n, 3, 6, 5), dtype=torch.uint8)
    labels = torch.arange(n) % 4
    return (
        images,
        labels,
        InMemoryLoader(images, labels, batch, train=train, device=torch.device("cpu"), **kw),
    )


def test_eval_batches_cover_every_image_in_order():
    images, labels, loader = _loader(train=False)
    xs, ys = zip(*loader, strict=True)
    assert len(loader) == 5 and [len(y) for y in ys] == [8, 8, 8, 8, 5]
    assert torch.equal(torch.cat(ys), labels)
    assert torch.equal((torch.cat(xs) * 255).round().to(torch.uint8), images)


@pytest.mark.parametrize("n, world_size", [(37, 3), (2, 3), (48, 2), (5, 1)])
def test_evaluation_shards_are_contiguous_runs_of_the_split(n, world_size):
    """A shared evaluation: each rank reads its run of the images in order, unpadded,
    starting at first_index (a rank may have none); together every image once."""
    images, labels = torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n)  # label: index
    seen = []
    for rank in range(world_size):
        loader = InMemoryLoader(
            images,
            labels,
            8,
            train=False,
            device=torch.device("cpu"),
            rank=rank,
            world_size=world_size,
        )
        got = [i for _, y in loader for i in y.tolist()]
        assert got == list(range(loader.first_index, loader.first_index + len(got)))
        assert loader.num_samples == len(got) in (n // world_size, n // world_size + 1)
        seen += got
    assert seen == list(range(n))


def test_training_batches_are_static_shuffled_per_epoch_and_reproducible():
    _, _, loader = _loader()
    first = [y.clone() for _, y in loader]
    assert len(first) == 4 and all(len(y) == 8 for y in first)  # drop_last: static shapes
    loader.set_epoch(1)
    second = [y.clone() for _, y in loader]
    loader.set_epoch(0)
    again = [y for _, y in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_ranks_shard_disjointly():
    images, _labels, _ = _loader(n=40)
    seen = []
    for rank in range(2):
        loader = InMemoryLoader(
            images,
            torch.arange(40),
            4,
            train=True,
            device=torch.device("cpu"),
            rank=rank,
            world_size=2,
        )
        seen.append(torch.cat([y for _, y in loader]))
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())


@pytest.mark.parametrize(
    "n, world_size, batch", [(6655, 4, 64), (191, 2, 32), (10, 4, 1), (3, 4, 1), (40, 2, 4)]
)
def test_every_rank_gets_a_shard_of_the_same_length(n, world_size, batch):
    """As torch's DistributedSampler (the FFCV loader's sharding): the epoch's order padded
    by wrapping around to ceil(n / world_size) per rank, so every rank makes as many steps
    (n = 6655 on 4 ranks used to give 26, 26, 26 and 25 batches of 64, and DDP hung)."""
    images, cpu = torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.device("cpu")

    def shard(rank, world_size):
        return InMemoryLoader(
            images, torch.arange(n), batch, train=True, device=cpu, rank=rank, world_size=world_size
        )

    shards = [shard(rank, world_size) for rank in range(world_size)]
    per_rank = -(-n // world_size)
    assert [s.num_samples for s in shards] == [per_rank] * world_size
    assert [len(s) for s in shards] == [per_rank // batch] * world_size
    order = shard(0, 1)._indices()  # the epoch's whole order
    for rank, s in enumerate(shards):
        sampler = DistributedSampler(range(n), world_size, rank, shuffle=False)
        assert torch.equal(s._indices(), order[list(sampler)]), f"rank {rank}"


def test_channels_last_and_errors():
    _, _, loader = _loader(channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="fewer than one batch"):
        _loader(n=5, batch=8)
    with pytest.raises(ValueError, match="images must be uint8"):
        InMemoryLoader(
            torch.rand(4, 3, 2, 2), torch.zeros(4), 2, train=False, device=torch.device("cpu")
        )


def test_flip_is_exact_and_jitter_rotation_stay_in_range():
    x = torch.rand(64, 3, 9, 7)
    flipped = hflip(x)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < mirrored.sum() < 54
    j = jitter(x, 0.25)
    assert j.min() >= 0 and j.max() <= 1 and not torch.equal(j, x)
    assert torch.allclose(jitter(x, 0.0), x, atol=1e-6)
    r = rotate(x, 2.0)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-5)
    assert torch.allclose(grey(torch.ones(1, 3, 2, 2)), torch.ones(1, 1, 2, 2))
    assert Augment(flip=False, jitter=0, rotation=0)(x) is x


def test_npz_source_round_trip(tmp_path):
    images = np.random.randint(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    data = load_dataset(DataConfig(source="npz", root=str(tmp_path / "d.npz"), img_size=8))
    assert data.num_classes == 3 and len(data.train.labels) + len(data.val.labels) == 30
    got = torch.cat([data.train.images, data.val.images]).permute(0, 2, 3, 1)
    assert sorted(map(bytes, got.numpy())) == sorted(map(bytes, images))  # raw: exact


def test_imagefolder_source_and_bad_roots(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    data = load_dataset(DataConfig(source="imagefolder", root=str(tmp_path), img_size=8))
    assert data.num_classes == 2 and data.train.images.shape == (6, 3, 8, 8)
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "val" / "dog" / "0.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"0.png: unreadable image"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path), img_size=8))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="folder is empty"):
        load_dataset(DataConfig(source="imagefolder", root=str(empty), img_size=8))
    (empty / "notes.txt").write_text("no classes here")
    with pytest.raises(ValueError, match="no class folders"):
        load_dataset(DataConfig(source="imagefolder", root=str(empty), img_size=8))


def test_imagefolder_without_val_is_split_like_the_converter(tmp_path):
    from PIL import Image

    from fastrft.data.readers import split_indices

    for cls in ("a", "b", "c"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(4):
            value = 10 * ("abc".index(cls) * 4 + i)  # image k is filled with 10 k
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(
                tmp_path / "train" / cls / f"{i}.png"
            )
    data = load_dataset(
        DataConfig(source="imagefolder", root=str(tmp_path), img_size=8, val_fraction=0.25),
        seed=3,
    )
    _, val_idx = split_indices(12, 0.25, seed=3)
    assert sorted(data.val.images[:, 0, 0, 0].div(10).long().tolist()) == val_idx.tolist()
    assert len(data.train.labels) == 9 and data.num_classes == 3


def test_cifar_source_in_memory(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, 4).tolist(),
        }
        (tmp_path / name).write_bytes(pickle.dumps(batches[name]))
    data = load_dataset(DataConfig(source="cifar", root=str(tmp_path), img_size=32))
    test = batches["test_batch"]
    assert torch.equal(data.val.images, torch.from_numpy(test[b"data"]).view(4, 3, 32, 32))
    assert data.val.labels.tolist() == test[b"labels"] and data.num_classes == 10
    assert len(data.train.labels) == 20


def test_imagefolder_test_folder_is_the_val_split_and_unknown_classes_are_refused(tmp_path):
    from PIL import Image

    for split, classes in (("train", ("a", "b")), ("test", ("a", "b"))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / cls / "0.png")
    cfg = DataConfig(source="imagefolder", root=str(tmp_path), img_size=8)
    data = load_dataset(cfg)
    assert data.val.labels.tolist() == [0, 1] and data.train.labels.tolist() == [0, 1]
    (tmp_path / "test" / "zebra").mkdir()
    with pytest.raises(ValueError, match=r"test: class folders zebra are not in .*train"):
        load_dataset(cfg)
