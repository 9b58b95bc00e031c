"""The FFCV loader over small .beton files written here (CPU; skipped without ffcv)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastrft.data import InMemoryLoader
from fastrft.data.ffcv_loader import FfcvLoader, ffcv_available
from tests.helpers import torchrun

ffcv = pytest.importorskip("ffcv")

CPU = torch.device("cpu")
N, SIZE = 37, 16


class _Indexed:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def _write(path, fields, rows):
    from ffcv.writer import DatasetWriter

    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(_Indexed(rows))
    return path


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """37 random 16x16 images, label i for image i (unique, so pairing can be checked)."""
    from ffcv.fields import IntField, RGBImageField

    images = np.random.default_rng(0).integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField()}
    path = tmp_path_factory.mktemp("beton") / "square.beton"
    _write(path, fields, [(img, i) for i, img in enumerate(images)])
    return path, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Mixed sizes, as `fastrft data convert` writes them from an ImageFolder tree.

    (A file written directly with ffcv's DatasetWriter from these arrays hung FFCV 1.0.2's
    EpochIterator; the converter's files load.)"""
    from PIL import Image

    from fastrft.data.convert import convert

    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    images = [
        small,
        small.repeat(2, 0).repeat(2, 1),  # 32x32: an exact 2x downscale gives `small` back
        rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
        rng.integers(0, 256, (12, 12, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
        rng.integers(0, 256, (18, 16, 3), dtype=np.uint8),
    ]
    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "val"):
        folder = root / split / "c0"
        folder.mkdir(parents=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(folder / f"{i}.png")
    out = convert(root, tmp_path_factory.mktemp("beton") / "mixed", progress=False)
    return out, torch.from_numpy(small).permute(2, 0, 1)


@pytest.fixture(scope="module")
def eval_loader(square):
    return FfcvLoader(square[0], 8, train=False, device=CPU, img_size=SIZE)


@pytest.fixture(scope="module")
def train_loader(square):
    return FfcvLoader(square[0], 8, train=True, device=CPU, img_size=SIZE, seed=3)


def _uint8(x):
    return (x * 255).round().to(torch.uint8)


def test_eval_batches_are_the_stored_images_in_order(square, eval_loader):
    _, images = square
    xs, ys = zip(*eval_loader, strict=True)
    assert len(eval_loader) == 5 and eval_loader.num_samples == N
    assert [len(y) for y in ys] == [8, 8, 8, 8, 5]
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, SIZE, SIZE) for x in xs)
    assert all(y.dtype == torch.int64 for y in ys)
    assert torch.equal(torch.cat(ys), torch.arange(N))
    assert torch.equal(_uint8(torch.cat(xs)), images)  # raw, same size, centre crop ratio 1


@pytest.mark.parametrize("batch", [4, 5])
def test_every_batch_kept_keeps_its_labels_and_a_last_batch_of_one_is_read(square, batch):
    """Batches kept past the next one (AutoAttack's evaluation keeps them all) used to see
    their labels overwritten by FFCV's reused buffers; a last batch of one image (37 = 9 * 4
    + 1) used to fail in FFCV's thread, and the loop waited for ever."""
    loader = FfcvLoader(square[0], batch, train=False, device=CPU, img_size=SIZE)
    xs, ys = zip(*loader, strict=True)
    assert [len(y) for y in ys] == [batch] * (N // batch) + [N % batch]
    assert torch.equal(torch.cat(ys), torch.arange(N))
    assert torch.equal(_uint8(torch.cat(xs)), square[1])


def test_eval_batches_equal_the_in_memory_loaders(square, eval_loader):
    _, images = square
    memory = InMemoryLoader(images, torch.arange(N), 8, train=False, device=CPU)
    assert len(memory) == len(eval_loader)
    for (xf, yf), (xm, ym) in zip(eval_loader, memory, strict=True):
        assert torch.equal(yf, ym)
        assert torch.equal(xf, xm)


def test_training_batches_are_static_shuffled_and_reproducible(train_loader):
    first = [y.clone() for _, y in train_loader]
    assert len(train_loader) == len(first) == N // 8 and all(len(y) == 8 for y in first)
    assert train_loader.num_samples == N
    seen = torch.cat(first)
    assert len(set(seen.tolist())) == len(seen)  # a permutation's prefix: no repeats
    assert not torch.equal(seen, torch.arange(len(seen)))  # shuffled
    again = torch.cat([y.clone() for _, y in train_loader])  # no set_epoch: the same epoch
    train_loader.set_epoch(1)
    second = torch.cat([y.clone() for _, y in train_loader])
    train_loader.set_epoch(0)
    resumed = torch.cat([y for _, y in train_loader])
    assert torch.equal(seen, again) and torch.equal(seen, resumed)
    assert not torch.equal(seen, second)


def test_training_crop_of_full_scale_keeps_image_label_pairs(square):
    path, images = square
    loader = FfcvLoader(path, 8, train=True, device=CPU, img_size=SIZE, crop_scale=(1.0, 1.0))
    for x, y in loader:
        assert torch.equal(_uint8(x), images[y])


def test_default_training_crop_gives_static_images_in_range(train_loader):
    x, _ = next(iter(train_loader))
    assert x.shape == (8, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


def test_augment_is_applied_in_training_only(square):
    path, images = square

    def blank(x):
        return torch.zeros_like(x)

    common = {"device": CPU, "img_size": SIZE, "augment": blank}
    train = FfcvLoader(path, 8, train=True, **common)
    assert all(torch.equal(x, torch.zeros_like(x)) for x, _ in train)
    evaluation = FfcvLoader(path, 8, train=False, **common)
    assert torch.equal(_uint8(torch.cat([x for x, _ in evaluation])), images)


def test_channels_last(square, eval_loader):
    path, _ = square
    loader = FfcvLoader(path, 8, train=False, device=CPU, img_size=SIZE, channels_last=True)
    for (x, _), (ref, _) in zip(loader, eval_loader, strict=True):
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, ref)


def test_mixed_sizes_are_cropped_and_resized(mixed):
    paths, small = mixed
    loader = FfcvLoader(paths["val"], 2, train=False, device=CPU, img_size=SIZE)
    xs, ys = zip(*loader, strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (6, 3, SIZE, SIZE) and torch.equal(y, torch.zeros(6, dtype=torch.long))
    assert torch.equal(_uint8(x[0]), small)
    assert (_uint8(x[1]).int() - small.int()).abs().max() <= 1  # 32 -> 16 area resize
    train = FfcvLoader(paths["train"], 2, train=True, device=CPU, img_size=SIZE)
    assert all(x.shape == (2, 3, SIZE, SIZE) for x, _ in train) and len(train) == 3


def test_bad_inputs(square, tmp_path):
    path, _ = square
    with pytest.raises(FileNotFoundError, match=r"missing\.beton"):
        FfcvLoader(tmp_path / "missing.beton", 8, train=False, device=CPU, img_size=SIZE)
    junk = tmp_path / "junk.beton"
    junk.write_bytes(b"this is not a beton file")
    with pytest.raises(ValueError, match=r"junk\.beton"):
        FfcvLoader(junk, 8, train=False, device=CPU, img_size=SIZE)
    cut = tmp_path / "cut.beton"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.beton"):
        FfcvLoader(cut, 8, train=False, device=CPU, img_size=SIZE)
    with pytest.raises(ValueError, match=r"lower data\.batch_size"):
        FfcvLoader(path, N + 1, train=True, device=CPU, img_size=SIZE)


def test_a_label_outside_the_classes_names_the_file(tmp_path):
    """Files written past the converter's checks: a negative label, and a label beyond the
    classes the converter recorded for the file's stem, fail on opening, not in training."""
    from ffcv.fields import IntField, RGBImageField

    from fastrft.data.convert import beton_info, convert

    images = np.random.default_rng(2).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField()}

    def write(path, labels):
        return _write(path, fields, list(zip(images, labels, strict=True)))

    def expect_error(path, match):  # both ways a run opens a .beton
        with pytest.raises(ValueError, match=match):
            beton_info(path)
        with pytest.raises(ValueError, match=match):
            FfcvLoader(path, 2, train=False, device=CPU, img_size=SIZE)

    negative = write(tmp_path / "neg.beton", [0, 1, 1, -1, 0, -1])
    expect_error(negative, r"neg\.beton: label -1 of sample 3 is outside \[0, 2\) .*2 such")

    np.savez(tmp_path / "d.npz", images=images, labels=np.array([0, 1, 2, 0, 1, 2]))
    paths = convert(tmp_path / "d.npz", tmp_path / "d", progress=False)  # records 3 classes
    assert beton_info(paths["val"]).num_classes == 3
    write(paths["val"], [0, 1, 3, 2, 2, 1])
    recorded = r"\(the classes recorded in .*d\.classes\.json\)"
    expect_error(
        paths["val"], rf"d\.val\.beton: label 3 of sample 2 is outside \[0, 3\) {recorded}"
    )


def test_build_loaders_takes_the_recorded_class_count(tmp_path):
    from fastrft.config import DataConfig
    from fastrft.data import build_loaders
    from fastrft.data.convert import convert

    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    y_train, y_val = np.arange(8) % 4, np.array([0, 1])  # val alone would say 2 classes
    np.savez(tmp_path / "d.npz", x_train=x[:8], y_train=y_train, x_val=x[8:], y_val=y_val)
    convert(tmp_path / "d.npz", tmp_path / "d", progress=False)
    cfg = DataConfig(source="beton", root=str(tmp_path / "d"), img_size=SIZE, batch_size=4)
    loaders = build_loaders(cfg, CPU)
    assert loaders.num_classes == loaders.val.info.num_classes == 4
    assert loaders.train.num_samples == 8 and loaders.val.num_samples == 2


def test_without_ffcv_the_module_imports_and_the_loader_says_how_to_install(monkeypatch, square):
    assert ffcv_available()
    monkeypatch.setitem(sys.modules, "ffcv", None)  # `import ffcv` now raises ImportError
    assert not ffcv_available()
    with pytest.raises(ImportError, match=r"libturbojpeg0-dev.*fastrft\[ffcv\]"):
        FfcvLoader(square[0], 8, train=False, device=CPU, img_size=SIZE)


@pytest.mark.slow
def test_distributed_ranks_get_disjoint_shards(square, tmp_path):
    """Two gloo processes under torchrun: FFCV's distributed=True gives each rank its own
    shard of every epoch (DistributedSampler pads 37 images to 38, so one image may repeat),
    with static batches and a new order each epoch."""
    worker = Path(__file__).with_name("ffcv_ddp_worker.py")
    run = torchrun(str(worker), str(square[0]), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["len"] == 19 // 4  # 19 samples per rank, drop_last batches of 4
    for epoch in ("0", "1"):
        a, b = (r["seen"][epoch] for r in ranks)
        assert len(a) == len(b) == 16
        assert len(set(a) & set(b)) <= 1, "the ranks' shards overlap"
        assert set(a) | set(b) <= set(range(N))
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"], "the same order in both epochs"


def test_a_subset_reads_the_stratified_draw_of_the_in_memory_sources(square):
    from fastrft.data.subsets import subset_indices

    loader = FfcvLoader(square[0], 2, train=True, device=CPU, img_size=SIZE, seed=5, subset=10)
    labels = sorted(torch.cat([y for _, y in loader]).tolist())  # label i is image i
    assert labels == subset_indices(np.arange(N), 10, 5, "train").tolist()
    assert loader.num_samples == 10 and len(loader) == 5


@pytest.mark.parametrize("subset", [0, 20])
def test_evaluation_shards_are_contiguous_runs_of_the_split(square, subset):
    """A shared evaluation: each of 3 ranks reads its run of the (subset of the) split in
    order, unpadded, starting at first_index; together every image once (label i: image i)."""

    def loader(**shard):
        return FfcvLoader(
            square[0], 4, train=False, device=CPU, img_size=SIZE, seed=5, subset=subset, **shard
        )

    every = torch.cat([y for _, y in loader()]).tolist()
    seen = []
    for rank in range(3):
        shard = loader(rank=rank, world_size=3)
        labels = torch.cat([y for _, y in shard]).tolist()
        assert labels == every[shard.first_index : shard.first_index + len(labels)]
        assert shard.num_samples == len(labels) in (len(every) // 3, len(every) // 3 + 1)
        seen += labels
    assert seen == every
