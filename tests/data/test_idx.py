"""The IDX source (MNIST-style files written here), the fashion_mnist layout, and the
in-memory loader's on-device grey-to-RGB resize."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastrft.config import ConfigError, DataConfig
from fastrft.data import build_loaders, load_dataset
from fastrft.data.idx import read_idx
from fastrft.data.readers import detect_source, load_source
from fastrft.datasets import IDX_DATASETS

CPU = torch.device("cpu")
DEBIAN = Path(IDX_DATASETS["fashion_mnist"].default_root)
FASHION = IDX_DATASETS["fashion_mnist"].classes


def idx_bytes(array: np.ndarray, code: int = 0x08, big_endian: str = ">u1") -> bytes:
    """The IDX encoding of ``array``, written from the format's description."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(big_endian).tobytes()


def write(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_idx(root: Path, n_train=7, n_val=4, h=5, w=3, prefix="", val="t10k", gz=(1, 0, 0, 1)):
    """Four IDX files of random images (label i % 3); returns the arrays written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    zipped = iter(gz)
    for split, name, n in (("train", "train", n_train), ("val", val, n_val)):
        images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        write(root / f"{prefix}{name}-images-idx3-ubyte", idx_bytes(images), next(zipped))
        write(root / f"{prefix}{name}-labels-idx1-ubyte", idx_bytes(labels), next(zipped))
        arrays[split] = images, labels
    return arrays


def test_read_idx_gzip_and_plain_and_wider_types(tmp_path):
    a = np.arange(7 * 5 * 3, dtype=np.uint8).reshape(7, 5, 3)
    for gz in (False, True):
        assert np.array_equal(read_idx(write(tmp_path / f"a{gz}", idx_bytes(a), gz)), a)
    wide = np.array([[1, -2], [300000, 7]], dtype=np.int32)
    got = read_idx(write(tmp_path / "w", idx_bytes(wide, 0x0C, ">i4"), False))
    assert got.dtype == np.int32 and np.array_equal(got, wide)
    got[0, 0] = 9  # writable: torch.from_numpy shares it


def test_idx_source_round_trips_gzip_and_plain_odd_sizes(tmp_path):
    want = make_idx(tmp_path / "d")
    assert detect_source(tmp_path / "d") == "idx"
    for source in ("idx", "auto"):
        train, val, classes = load_source(tmp_path / "d", source)
        assert classes is None
        for split, (images, labels) in zip((train, val), want.values(), strict=True):
            assert split.images.shape == (*images.shape, 1)  # grey stays one channel
            assert np.array_equal(split.images[..., 0], images)
            assert split.labels.dtype == np.int64 and np.array_equal(split.labels, labels)
            assert np.array_equal(split[2][0], np.repeat(images[2][..., None], 3, -1))  # RGB
    data = load_dataset(DataConfig(source="idx", root=str(tmp_path / "d"), img_size=8))
    assert data.num_classes == 3 and data.train.images.shape == (7, 1, 5, 3)
    assert torch.equal(data.val.images[:, 0], torch.from_numpy(want["val"][0]))


def test_an_emnist_prefix_and_test_for_t10k_are_found_and_plain_wins_over_gzip(tmp_path):
    want = make_idx(tmp_path, prefix="emnist-digits-", val="test", gz=(0, 0, 0, 0))
    (tmp_path / "emnist-digits-mapping.txt").write_text("0 48\n")
    write(tmp_path / "emnist-digits-train-labels-idx1-ubyte", b"not read", True)
    train, val, _ = load_source(tmp_path, "idx")
    assert np.array_equal(train.labels, want["train"][1])
    assert np.array_equal(val.images[..., 0], want["val"][0])


def _broken(root: Path, case: str) -> str:
    """Break an IDX folder; returns the error's pattern (it names the file)."""
    make_idx(root, gz=(0, 1, 0, 0))
    images = root / "train-images-idx3-ubyte"
    labels = root / "train-labels-idx1-ubyte.gz"
    good = images.read_bytes()
    if case == "magic":
        images.write_bytes(b"\x00\x00\x07\x03" + good[4:])
        return r"train-images-idx3-ubyte: not an IDX file \(magic number 00 00 07 03"
    if case == "magic_swapped":  # little-endian header, as a careless writer would leave
        images.write_bytes(b"\x03\x08\x00\x00" + good[4:])
        return r"train-images-idx3-ubyte: not an IDX file"
    if case == "truncated":
        images.write_bytes(good[:-4])
        return rf"train-images-idx3-ubyte: truncated IDX file \({len(good) - 4} bytes"
    if case == "truncated_header":
        images.write_bytes(good[:10])
        return r"train-images-idx3-ubyte: truncated IDX file \(10 bytes, header of 16\)"
    if case == "trailing":
        images.write_bytes(good + b"\0")
        return r"train-images-idx3-ubyte: IDX file with trailing bytes"
    if case == "truncated_gzip":
        labels.write_bytes(labels.read_bytes()[:-6])
        return r"train-labels-idx1-ubyte\.gz: damaged or truncated gzip file"
    if case == "count":
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(6, np.uint8))))
        return r"train-labels-idx1-ubyte\.gz: 6 labels for the 7 images of .*train-images"
    if case == "dtype":
        images.write_bytes(idx_bytes(np.zeros((7, 5, 3), np.int32), 0x0C, ">i4"))
        return r"train-images-idx3-ubyte: images must be uint8 \(N, H, W\).*int32"
    if case == "missing":
        (root / "t10k-labels-idx1-ubyte").unlink()
        return r"no complete IDX set; looked for train-images-idx3-ubyte, .*t10k-labels"
    if case == "several":
        make_idx(root, prefix="emnist-letters-")
        return r"several IDX sets \(prefixes '', 'emnist-letters-'\)"
    raise AssertionError(case)


CASES = ["magic", "magic_swapped", "truncated", "truncated_header", "trailing"]
CASES += ["truncated_gzip", "count", "dtype", "missing", "several"]


@pytest.mark.parametrize("case", CASES)
def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path, case):
    pattern = _broken(tmp_path / "d", case)
    with pytest.raises(ValueError, match=pattern) as err:
        load_source(tmp_path / "d", "idx")
    assert "\n" not in str(err.value)


def test_fashion_mnist_layout_names_the_classes_and_checks_labels(tmp_path):
    make_idx(tmp_path / "f")
    *_, classes = load_source(tmp_path / "f", "fashion_mnist")
    assert classes == list(FASHION) and classes[0] == "T-shirt/top" and len(classes) == 10
    cfg = DataConfig(source="fashion_mnist", root=str(tmp_path / "f"), img_size=4)
    assert load_dataset(cfg).num_classes == 10
    labels = tmp_path / "f" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 10, 2], np.uint8))))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: label 10 is outside"):
        load_source(tmp_path / "f", "fashion_mnist")


def test_fashion_mnist_without_its_files_says_how_to_install_them(tmp_path, monkeypatch):
    from dataclasses import replace

    absent = tmp_path / "not-installed"
    entry = replace(IDX_DATASETS["fashion_mnist"], default_root=str(absent))
    monkeypatch.setitem(IDX_DATASETS, "fashion_mnist", entry)
    for root in (None, str(absent)):
        with pytest.raises(ConfigError, match=r"^data\.root: ") as err:
            DataConfig(source="fashion_mnist", root=root)
        message = str(err.value)
        assert "\n" not in message and str(absent) in message
        assert "apt-get install dataset-fashion-mnist" in message and "data.root" in message
    make_idx(absent)
    cfg = DataConfig(source="fashion_mnist")
    assert cfg.root is None and cfg.paths() == [absent]
    assert len(load_dataset(cfg).train.labels) == 7


@pytest.mark.skipif(
    not DEBIAN.is_dir(), reason=f"{DEBIAN} absent: apt-get install dataset-fashion-mnist"
)
def test_the_debian_package_is_read_without_a_root():
    cfg = DataConfig(source="fashion_mnist", img_size=32, train_images=100, val_images=50)
    data = load_dataset(cfg)
    assert data.train.images.shape == (100, 1, 28, 28) and len(data.val.labels) == 50
    assert data.num_classes == 10 and torch.bincount(data.train.labels).tolist() == [10] * 10
    train, val, classes = load_source(DEBIAN, "fashion_mnist")
    assert (len(train), len(val), classes) == (60_000, 10_000, list(FASHION))
    assert np.bincount(val.labels).tolist() == [1000] * 10


def test_the_loader_gives_grey_images_three_channels_at_img_size_on_the_device(tmp_path):
    """Against PIL's bilinear resize (torch's antialias follows it), per image, within one
    grey level, and exactly equal to torch's resize of the uint8 image rounded to levels
    (up: each batch on the device; down: once at load)."""
    from PIL import Image

    want = make_idx(tmp_path / "d", n_train=9, n_val=5, h=28, w=28)
    for size in (11, 40, 28):
        cfg = DataConfig(source="idx", root=str(tmp_path / "d"), img_size=size, batch_size=2)
        loaders = build_loaders(cfg, CPU)
        x = torch.cat([b for b, _ in loaders.val])
        assert x.shape == (5, 3, size, size) and x.dtype == torch.float32
        held = (1, min(size, 28), min(size, 28))  # kept grey; shrunk once at load if larger
        assert loaders.val.images.shape[1:] == held and loaders.train.images.shape[1:] == held
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
        for got, image in zip(x[:, 0], want["val"][0], strict=True):
            pil = Image.fromarray(image).resize((size, size), Image.BILINEAR)
            levels = (got * 255).round()
            assert (levels - torch.from_numpy(np.array(pil)).float()).abs().max() <= 1
            ref = F.interpolate(
                torch.from_numpy(image)[None, None].float(),
                size=(size, size),
                mode="bilinear",
                antialias=True,
            )
            assert torch.equal(got, ref[0, 0].round().clamp(0, 255) / 255)
        batch, _ = next(iter(loaders.train))
        assert batch.shape == (2, 3, size, size)
