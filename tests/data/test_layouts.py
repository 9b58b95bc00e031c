"""Named datasets in their native layouts: file lists, labels, class names, broken trees."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastrft.data.layouts import DATASETS, dataset_files

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
AIRCRAFT_CLASSES = ["Cessna 172", "707-320", "F-16A/B"]  # file order, not sorted
CALTECH_CLASSES = ["001.ak47", "002.american-flag", "257.clutter"]
WNIDS = ["n01440764", "n02102040", "n03000684"]


def _save(path: Path, seed: int) -> Path:
    """A tiny image of a colour derived from seed, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (6, 8, 3))
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def make_cub(root: Path) -> tuple[list, list]:
    """CUB-200-2011: 9 images, 3 per class, ids interleaved across classes; ids 1, 5, 9 test."""
    images, labels, split, train, val = [], [], [], [], []
    for image_id in range(1, 10):
        label = (image_id - 1) % 3
        cls = CUB_CLASSES[label]
        rel = f"{cls}/{cls.split('.')[1]}_{image_id:04d}_{790000 + image_id}.jpg"
        path = _save(root / "images" / rel, image_id)
        is_train = image_id not in (1, 5, 9)
        images.append(f"{image_id} {rel}")
        labels.append(f"{image_id} {label + 1}")
        split.append(f"{image_id} {int(is_train)}")
        (train if is_train else val).append((path, label))
    _write(root / "images.txt", images)
    _write(root / "image_class_labels.txt", labels)
    _write(root / "train_test_split.txt", split)
    _write(root / "classes.txt", [f"{i + 1} {c}" for i, c in enumerate(CUB_CLASSES)])
    return train, val


def make_aircraft(root: Path) -> tuple[list, list]:
    data = root / "data"
    _write(data / "variants.txt", AIRCRAFT_CLASSES)
    parts: dict[str, list] = {"trainval": [], "test": []}
    for n in range(8):
        image_id, label = f"{1025794 + n:07d}", (n * 2) % 3
        part = "test" if n % 4 == 3 else "trainval"
        parts[part].append((_save(data / "images" / f"{image_id}.jpg", n), label))
    for part, files in parts.items():
        lines = [f"{p.stem} {AIRCRAFT_CLASSES[y]}" for p, y in files]
        _write(data / f"images_variant_{part}.txt", lines)
    return parts["trainval"], parts["test"]


def make_caltech256(root: Path) -> tuple[list, list]:
    train = []
    for label, cls in enumerate(CALTECH_CLASSES):
        number = cls.split(".")[0]
        for i in range(1, 4):
            path = root / "256_ObjectCategories" / cls / f"{number}_{i:04d}.jpg"
            train.append((_save(path, 10 * label + i), label))
    (root / "256_ObjectCategories" / "001.ak47" / "Thumbs.db").write_bytes(b"not an image")
    return train, []


def make_imagenette(root: Path) -> tuple[list, list]:
    train, val = [], []
    for label, wnid in enumerate(WNIDS):
        for i in range(3):
            path = root / "train" / wnid / f"{wnid}_{10026 + i}.JPEG"
            train.append((_save(path, 10 * label + i), label))
        path = root / "val" / wnid / f"ILSVRC2012_val_{9111 + label:08d}.JPEG"
        val.append((_save(path, 100 + label), label))
    _write(root / "noisy_imagenette.csv", ["path,noisy_labels_0"])
    return train, val


MAKERS = {
    "cub": (make_cub, CUB_CLASSES),
    "aircraft": (make_aircraft, AIRCRAFT_CLASSES),
    "caltech256": (make_caltech256, CALTECH_CLASSES),
    "imagenette": (make_imagenette, WNIDS),
}


def test_every_dataset_is_described():
    assert set(DATASETS) == set(MAKERS)
    assert all(isinstance(v, str) and "ROOT" in v for v in DATASETS.values())


@pytest.mark.parametrize("name", list(MAKERS))
def test_native_layout_gives_splits_labels_and_classes(tmp_path, name):
    make, classes = MAKERS[name]
    root = tmp_path / name
    want_train, want_val = make(root)
    train, val, got_classes = dataset_files(name, str(root))
    assert got_classes == classes
    assert train == want_train
    assert val == want_val
    assert all(isinstance(p, Path) and p.is_file() for p, _ in train + val)
    assert {y for _, y in train} == set(range(len(classes)))


def _break(root: Path, case: str) -> None:
    target = root / case
    shutil.rmtree(target) if target.is_dir() else target.unlink()


@pytest.mark.parametrize(
    "name, case, match",
    [
        ("cub", "image_class_labels.txt", r"missing file .*image_class_labels\.txt"),
        ("cub", "classes.txt", r"missing file .*classes\.txt"),
        (
            "cub",
            "images/002.Laysan_Albatross/Laysan_Albatross_0005_790005.jpg",
            r"listed image .*Laysan_Albatross_0005_790005\.jpg is missing",
        ),
        ("aircraft", "data/variants.txt", r"missing file .*variants\.txt"),
        ("aircraft", "data/images_variant_test.txt", r"missing file .*images_variant_test\.txt"),
        ("aircraft", "data/images/1025797.jpg", r"listed image .*1025797\.jpg is missing"),
        ("caltech256", "256_ObjectCategories", r"missing folder .*256_ObjectCategories"),
        ("imagenette", "val", r"missing folder .*val"),
    ],
)
def test_broken_tree_is_named(tmp_path, name, case, match):
    root = tmp_path / name
    MAKERS[name][0](root)
    _break(root, case)
    with pytest.raises(ValueError, match=match) as err:
        dataset_files(name, root)
    message = str(err.value)
    assert message.startswith(f"{name} at {root}")
    assert DATASETS[name] in message


def test_inconsistent_annotations_and_bad_names(tmp_path):
    root = tmp_path / "cub"
    make_cub(root)
    _write(root / "image_class_labels.txt", [f"{i} {1 + (i - 1) % 3}" for i in range(1, 9)])
    with pytest.raises(ValueError, match=r"image id 9 is not in .*image_class_labels\.txt"):
        dataset_files("cub", root)

    root = tmp_path / "aircraft"
    make_aircraft(root)
    _write(root / "data" / "images_variant_test.txt", ["1025797 Boeing 747-400"])
    with pytest.raises(ValueError, match=r"variant 'Boeing 747-400' is not in .*variants\.txt"):
        dataset_files("aircraft", root)

    with pytest.raises(ValueError, match=r"root folder .*nowhere does not exist"):
        dataset_files("imagenette", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"unknown dataset 'cars'; known: cub, aircraft"):
        dataset_files("cars", tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    root = tmp_path / "imagenette"
    make_imagenette(root)
    (root / "val" / WNIDS[1] / f"ILSVRC2012_val_{9112:08d}.JPEG").unlink()
    with pytest.raises(ValueError, match=rf"class folder .*val/{WNIDS[1]} is missing or holds no"):
        dataset_files("imagenette", root)


def _labels(path: Path) -> list[int]:
    from ffcv.reader import Reader

    return [int(label) for _, label in Reader(str(path)).metadata]


def test_convert_cub_round_trip(tmp_path):
    pytest.importorskip("ffcv")
    from fastrft.data.convert import beton_info, convert

    root = tmp_path / "CUB_200_2011"
    want_train, want_val = make_cub(root)
    paths = convert(root, tmp_path / "out" / "cub", source="cub", progress=False)
    for split, want in (("train", want_train), ("val", want_val)):
        info = beton_info(paths[split])
        assert info.num_samples == len(want)
        assert info.num_classes == 3
        assert (info.min_height, info.max_width) == (6, 8)
        assert _labels(paths[split]) == [y for _, y in want]


def test_convert_without_official_split_draws_seeded_split(tmp_path):
    pytest.importorskip("ffcv")
    from fastrft.data.convert import beton_info, convert

    root = tmp_path / "caltech"
    make_caltech256(root)
    paths = convert(
        root, tmp_path / "c", source="caltech256", val_fraction=0.25, seed=0, progress=False
    )
    sizes = {split: beton_info(p).num_samples for split, p in paths.items()}
    assert sizes == {"train": 7, "val": 2}
    with pytest.raises(ValueError, match="missing folder"):
        convert(root, tmp_path / "x", source="imagenette", progress=False)
