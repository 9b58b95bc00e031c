"""Converting ImageFolder, CIFAR and npz sources to .beton files, and reading them back."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

ffcv = pytest.importorskip("ffcv")
Image = pytest.importorskip("PIL.Image")

from ffcv.reader import Reader  # noqa: E402

from fastrft.data import convert as convert_module  # noqa: E402
from fastrft.data.convert import beton_info, classes_file, convert  # noqa: E402
from fastrft.data.readers import ArraySplit  # noqa: E402

SIZES = [(20, 14), (9, 31), (16, 16), (33, 8)]  # (height, width)


def _image(rng, h, w):
    """Smooth colour blobs (random noise would be JPEG's worst case, chroma subsampled away)."""
    coarse = Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((w, h), Image.BILINEAR))


def _make_folder(root: Path, classes=("cat", "dog", "emu"), per_class=4, seed=0):
    """ROOT/<class>/<i>.png|jpg of mixed sizes; returns {path: (pixels as stored, label)}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = SIZES[(i + label) % len(SIZES)]
            path = root / name / f"{i}.{'png' if i % 2 else 'jpg'}"
            Image.fromarray(_image(rng, h, w)).save(path)
            truth[path] = (np.asarray(Image.open(path).convert("RGB")), label)
    return truth


def _read_samples(path: Path):
    """Every (image HWC uint8, label) of a .beton, decoded here from its metadata."""
    reader = Reader(str(path))
    sizes = {int(a["ptr"]): int(a["size"]) for a in reader.alloc_table}
    out = []
    for image, label in reader.metadata:
        mode, width, height, ptr = (int(v) for v in image)
        blob = np.fromfile(path, dtype=np.uint8, count=sizes[ptr], offset=ptr)
        if mode == 1:  # raw
            pixels = blob[: height * width * 3].reshape(height, width, 3)
        else:
            pixels = np.asarray(Image.open(io.BytesIO(blob.tobytes())).convert("RGB"))
        out.append((pixels, int(label)))
    return out


def _recorded(beton: Path):
    """The classes file convert wrote beside a .beton, parsed."""
    return json.loads(classes_file(beton).read_text())


def _by_order(truth):
    return [v for _, v in sorted(truth.items(), key=lambda kv: (kv[1][1], kv[0].name))]


@pytest.fixture
def folder(tmp_path):
    train = _make_folder(tmp_path / "pets" / "train", seed=0)
    val = _make_folder(tmp_path / "pets" / "val", per_class=2, seed=1)
    return tmp_path / "pets", train, val


def test_imagefolder_raw_round_trips_exactly(folder, tmp_path):
    root, train, val = folder
    paths = convert(root, tmp_path / "out" / "pets.beton", mode="raw", progress=False)
    assert paths == {
        "train": tmp_path / "out" / "pets.train.beton",
        "val": tmp_path / "out" / "pets.val.beton",
    }
    for name, truth in (("train", train), ("val", val)):
        got, want = _read_samples(paths[name]), _by_order(truth)
        assert [y for _, y in got] == [y for _, y in want]
        for i, ((a, _), (b, _)) in enumerate(zip(got, want, strict=True)):
            assert a.shape == b.shape and np.array_equal(a, b), f"{name} sample {i} differs"
    info = beton_info(paths["train"])
    assert (info.num_samples, info.num_classes, info.distinct_labels) == (12, 3, 3)
    assert (info.min_height, info.max_height, info.min_width, info.max_width) == (9, 33, 8, 31)
    assert info.mode == "raw" and info.file_bytes == paths["train"].stat().st_size
    assert "12 samples" in str(info)
    record = tmp_path / "out" / "pets.classes.json"
    assert info.classes_file == record and beton_info(paths["val"]).classes_file == record
    assert _recorded(paths["val"]) == {"num_classes": 3, "classes": ["cat", "dog", "emu"]}
    written = sorted([*paths.values(), record])
    assert sorted((tmp_path / "out").iterdir()) == written  # no temporary files


def test_imagefolder_jpg_is_close_and_max_side_is_respected(folder, tmp_path):
    root, train, _ = folder
    paths = convert(root, tmp_path / "pets", mode="jpg", jpeg_quality=95, progress=False)
    got, want = _read_samples(paths["train"]), _by_order(train)
    diffs = [
        np.abs(a.astype(int) - b.astype(int)).mean()
        for (a, _), (b, _) in zip(got, want, strict=True)
    ]
    assert [y for _, y in got] == [y for _, y in want]
    assert max(diffs) < 8 and np.mean(diffs) > 0, diffs
    assert beton_info(paths["train"]).mode == "jpg"

    small = convert(root, tmp_path / "small", max_side=12, progress=False)
    for (a, _), (b, _) in zip(_read_samples(small["train"]), want, strict=True):
        assert max(a.shape[:2]) == min(12, max(b.shape[:2]))
        assert abs(a.shape[0] / a.shape[1] - b.shape[0] / b.shape[1]) < 0.35  # aspect kept
    info = beton_info(small["val"])
    assert info.max_height <= 12 and info.max_width <= 12


def _write_cifar10(root: Path, n=20, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(),
        }
        (root / name).write_bytes(pickle.dumps(batch))
        batches[name] = batch
    return batches


def _nhwc(data):
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar10_round_trips_through_ffcv_loader(tmp_path):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    batches = _write_cifar10(tmp_path / "cifar")
    paths = convert(tmp_path / "cifar", tmp_path / "c10", progress=False)
    train = [b for k, b in batches.items() if k != "test_batch"]
    want = {
        "train": (
            _nhwc(np.concatenate([b[b"data"] for b in train])),
            np.concatenate([b[b"labels"] for b in train]),
        ),
        "val": (_nhwc(batches["test_batch"][b"data"]), np.array(batches["test_batch"][b"labels"])),
    }
    for name, (images, labels) in want.items():
        loader = Loader(
            str(paths[name]),
            batch_size=64,
            order=OrderOption.SEQUENTIAL,
            num_workers=1,
            drop_last=False,
            pipelines={
                "image": [SimpleRGBImageDecoder(), ToTensor()],
                "label": [IntDecoder(), ToTensor()],
            },
        )
        xs, ys = zip(*[(x.numpy().copy(), y.numpy().copy()) for x, y in loader], strict=True)
        assert np.array_equal(np.concatenate(xs), images), name
        assert np.array_equal(np.concatenate(ys).reshape(-1), labels), name
    assert beton_info(paths["train"]).num_samples == 100


def test_cifar100_is_detected_and_read(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "c100"
    root.mkdir()
    data = {}
    for name in ("train", "test"):
        data[name] = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"fine_labels": rng.integers(0, 100, 20).tolist(),
            b"coarse_labels": rng.integers(0, 20, 20).tolist(),
        }
        (root / name).write_bytes(pickle.dumps(data[name]))
    names = [f"class{i}".encode() for i in range(100)]
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}))
    paths = convert(root, tmp_path / "out", progress=False)
    assert _recorded(paths["train"]) == {"num_classes": 100, "classes": [n.decode() for n in names]}
    assert beton_info(paths["val"]).num_classes == 100  # recorded, whichever labels occur
    got = _read_samples(paths["val"])
    assert [y for _, y in got] == data["test"][b"fine_labels"]
    assert np.array_equal(np.stack([x for x, _ in got]), _nhwc(data["test"][b"data"]))


def test_npz_with_own_split_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (10, 3, 7, 5), dtype=np.uint8)  # NCHW
    x_val = rng.integers(0, 256, (4, 7, 5, 3), dtype=np.uint8)  # NHWC
    y_train, y_val = np.arange(10) % 4, np.array([3, 2, 1, 0])
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    paths = convert(tmp_path / "d.npz", tmp_path / "d", progress=False)
    for name, images, labels in (
        ("train", x_train.transpose(0, 2, 3, 1), y_train),
        ("val", x_val, y_val),
    ):
        got = _read_samples(paths[name])
        assert np.array_equal(np.stack([x for x, _ in got]), images), name
        assert [y for _, y in got] == labels.tolist(), name
    assert _recorded(paths["val"]) == {"num_classes": 4, "classes": None}  # npz: no names


def test_seeded_split_is_reproducible_and_disjoint(tmp_path):
    n = 50
    images = np.random.default_rng(0).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(n))  # label = sample id

    def ids(out, seed):
        paths = convert(
            tmp_path / "d.npz", tmp_path / out, val_fraction=0.2, seed=seed, progress=False
        )
        return {name: [y for _, y in _read_samples(p)] for name, p in paths.items()}

    a, b, c = ids("a", 0), ids("b", 0), ids("c", 1)
    assert a == b and a != c
    assert len(a["val"]) == 10 and len(a["train"]) == 40
    assert sorted(a["train"] + a["val"]) == list(range(n))
    got = _read_samples(tmp_path / "a.val.beton")
    assert all(np.array_equal(x, images[y]) for x, y in got)


def _corrupt(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("missing", FileNotFoundError, "nope"),
        ("empty", ValueError, "empty"),
        ("empty_class", ValueError, "emu"),
        ("truncated_image", ValueError, "bad.jpg"),
        ("not_an_image", ValueError, "junk.png"),
        ("negative_label", ValueError, "negative label"),
        ("cifar_label_range", ValueError, "outside"),
        ("cifar_shape", ValueError, "test_batch"),
        ("cifar_missing_batch", FileNotFoundError, "data_batch_4"),
    ],
)
def test_bad_input_is_named(tmp_path, case, error, match):
    src = tmp_path / "src"
    if case == "empty":
        src.mkdir()
    elif case == "empty_class":
        _make_folder(src, classes=("cat",), per_class=2)
        (src / "emu").mkdir()
    elif case in ("truncated_image", "not_an_image"):
        _make_folder(src, per_class=2)
        good = (src / "cat" / "0.jpg").read_bytes()
        name = "bad.jpg" if case == "truncated_image" else "junk.png"
        data = good[: len(good) // 2] if case == "truncated_image" else b"not an image"
        _corrupt(src / "dog" / name, data)
    elif case == "negative_label":
        src = tmp_path / "d.npz"
        np.savez(src, images=np.zeros((6, 4, 4, 3), np.uint8), labels=np.array([0, 1, -1, 0, 1, 0]))
    elif case.startswith("cifar"):
        batches = _write_cifar10(src)
        if case == "cifar_label_range":
            batches["data_batch_2"][b"labels"][3] = 10
            _corrupt(src / "data_batch_2", pickle.dumps(batches["data_batch_2"]))
        elif case == "cifar_shape":
            batches["test_batch"][b"data"] = batches["test_batch"][b"data"][:, :3000]
            _corrupt(src / "test_batch", pickle.dumps(batches["test_batch"]))
        else:
            (src / "data_batch_4").unlink()
    with pytest.raises(error, match=match):
        convert(src if case != "missing" else tmp_path / "nope", tmp_path / "out", progress=False)
    assert not list(tmp_path.glob("out*"))


def test_skip_drops_bad_images_with_a_warning(tmp_path):
    src = tmp_path / "src"
    _make_folder(src, per_class=4)
    _corrupt(src / "dog" / "bad.jpg", (src / "cat" / "0.jpg").read_bytes()[:100])
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image.*bad\.jpg"):
        paths = convert(src, tmp_path / "out", on_bad_image="skip", seed=0, progress=False)
    total = sum(beton_info(p).num_samples for p in paths.values())
    assert total == 12


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4, 4, 3), np.uint8), labels=np.arange(10))
    real = convert_module._write_beton

    def fail_on_val(path, split, opts, progress):
        if "val" in opts["name"]:
            raise KeyboardInterrupt
        real(path, split, opts, progress)

    monkeypatch.setattr(convert_module, "_write_beton", fail_on_val)
    with pytest.raises(KeyboardInterrupt):
        convert(tmp_path / "d.npz", tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_progress_bar_and_truncated_beton(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4, 4, 3), np.uint8), labels=np.arange(10))
    paths = convert(tmp_path / "d.npz", tmp_path / "out", progress=True)
    assert "out.train.beton" in capsys.readouterr().out
    data = paths["train"].read_bytes()
    for cut in (10, len(data) // 2):
        broken = _corrupt(tmp_path / f"cut{cut}.beton", data[:cut])
        with pytest.raises(ValueError, match=rf"cut{cut}\.beton"):
            beton_info(broken)
    with pytest.raises(FileNotFoundError, match=r"absent\.beton"):
        beton_info(tmp_path / "absent.beton")


def test_a_failing_writer_worker_raises_instead_of_hanging(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4, 4, 3), np.uint8), labels=np.arange(10))

    def broken(self, i):
        raise OSError("disk gone")

    monkeypatch.setattr(ArraySplit, "__getitem__", broken)
    with pytest.raises(RuntimeError, match="worker died"):
        convert(tmp_path / "d.npz", tmp_path / "out", workers=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_idx_sources_round_trip_as_rgb_through_the_cli(tmp_path, capsys):
    from fastrft.cli import main
    from fastrft.datasets import IDX_DATASETS
    from tests.data.test_idx import make_idx

    want = make_idx(tmp_path / "fm")
    for source, classes in (
        ("fashion_mnist", list(IDX_DATASETS["fashion_mnist"].classes)),
        ("auto", None),
    ):
        out = tmp_path / source
        main(["data", "convert", "--source", source, str(tmp_path / "fm"), str(out)])
        assert f"{out}.val.beton" in capsys.readouterr().out
        for name, (images, labels) in want.items():
            got = _read_samples(Path(f"{out}.{name}.beton"))
            assert np.array_equal(
                np.stack([x for x, _ in got]), np.repeat(images[..., None], 3, -1)
            )
            assert [y for _, y in got] == labels.tolist(), name
        assert _recorded(Path(f"{out}.train.beton"))["classes"] == classes
