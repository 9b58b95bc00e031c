"""Named datasets in their native layouts: file lists, labels, class names, broken trees."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from fastrft.data.layouts import dataset_files
from fastrft.datasets import DATASETS

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
AIRCRAFT_CLASSES = ["Cessna 172", "707-320", "F-16A/B"]  # file order, not sorted
CALTECH_CLASSES = ["001.ak47", "002.american-flag", "257.clutter"]
WNIDS = ["n01440764", "n02102040", "n03000684"]
CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Volvo XC90 SUV 2007"]
DOGS_CLASSES = [
    "n02085620-Chihuahua",
    "n02085782-Japanese_spaniel",
    "n02116738-African_hunting_dog",
]


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


def _cells(strings: list[str], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB cell array of char arrays, as savemat writes a numpy object array."""
    cells = np.empty(len(strings), dtype=object)
    cells[:] = strings
    return cells.reshape(shape)


def _cars_annotations(files: list[tuple[Path, int]], shape: str) -> np.ndarray:
    """The authors' struct array: bbox_x1..bbox_y2, class (1-based, uint8), fname; 1xN or Nx1."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = np.zeros(len(files), dtype=[(f, object) for f in fields])
    for i, (path, label) in enumerate(files):
        box = [np.uint16(v) for v in (1, 2, 7, 5)]
        records[i] = (*box, np.uint8(label + 1), path.name)
    return records.reshape((1, -1) if shape == "1xN" else (-1, 1))


def make_cars(root: Path, shape: str = "1xN", test_labels_in: str = ".") -> tuple[list, list]:
    """Stanford Cars: 7 train and 3 test images, numbered per split as the authors do."""
    parts: dict[str, list] = {"train": [], "test": []}
    for n in range(10):
        part = "test" if n % 3 == 1 else "train"
        number, label = len(parts[part]) + 1, (n // 2) % 3
        parts[part].append((_save(root / f"cars_{part}" / f"{number:05d}.jpg", n), label))
    devkit = root / "devkit"
    devkit.mkdir(parents=True)
    savemat(devkit / "cars_meta.mat", {"class_names": _cells(CARS_CLASSES, (1, 3))})
    savemat(
        devkit / "cars_train_annos.mat", {"annotations": _cars_annotations(parts["train"], shape)}
    )
    test_annos = {"annotations": _cars_annotations(parts["test"], shape)}
    savemat(root / test_labels_in / "cars_test_annos_withlabels.mat", test_annos)
    return parts["train"], parts["test"]


def make_dogs(root: Path, shape: str = "Nx1", lists: str = "lists") -> tuple[list, list]:
    """Stanford Dogs: 3 images per breed, the middle one test; lists Nx1 as shipped, or 1xN."""
    parts: dict[str, list] = {"train": [], "test": []}
    for n in range(9):
        label, part = n % 3, "test" if n // 3 == 1 else "train"
        breed = DOGS_CLASSES[label]
        rel = f"{breed}/{breed.split('-')[0]}_{5927 + n}.jpg"
        parts[part].append((rel, _save(root / "Images" / rel, n), label))
    for part, rows in parts.items():
        n = len(rows)
        dims = (n, 1) if shape == "Nx1" else (1, n)
        (root / lists).mkdir(parents=True, exist_ok=True)
        savemat(
            root / lists / f"{part}_list.mat",
            {
                "file_list": _cells([rel for rel, _, _ in rows], dims),
                "annotation_list": _cells([rel[:-4] for rel, _, _ in rows], dims),
                "labels": np.array([y + 1.0 for _, _, y in rows]).reshape(dims),
            },
        )
    return [(p, y) for _, p, y in parts["train"]], [(p, y) for _, p, y in parts["test"]]


MAKERS = {
    "cub": (make_cub, CUB_CLASSES),
    "aircraft": (make_aircraft, AIRCRAFT_CLASSES),
    "caltech256": (make_caltech256, CALTECH_CLASSES),
    "imagenette": (make_imagenette, WNIDS),
    "cars": (make_cars, CARS_CLASSES),
    "dogs": (make_dogs, DOGS_CLASSES),
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
        ("cars", "devkit/cars_meta.mat", r"missing file .*devkit/cars_meta\.mat"),
        (
            "cars",
            "cars_test_annos_withlabels.mat",
            r"missing file .*/cars_test_annos_withlabels\.mat or .*/devkit/cars_test_annos_with",
        ),
        ("cars", "cars_test", r"missing folder .*cars_test"),
        ("cars", "cars_train/00004.jpg", r"listed image .*cars_train/00004\.jpg is missing"),
        ("dogs", "Images", r"missing folder .*Images"),
        ("dogs", "lists/test_list.mat", r"missing file .*lists/test_list\.mat or .*/test_list"),
        (
            "dogs",
            f"Images/{DOGS_CLASSES[2]}/n02116738_5935.jpg",
            r"listed image .*n02116738_5935\.jpg is missing",
        ),
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
    assert message.count("Expected layout") == 1 and message.endswith(DATASETS[name])


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
    with pytest.raises(ValueError, match=r"unknown dataset 'pets'; known: cub, aircraft"):
        dataset_files("pets", tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    root = tmp_path / "imagenette"
    make_imagenette(root)
    (root / "val" / WNIDS[1] / f"ILSVRC2012_val_{9112:08d}.JPEG").unlink()
    with pytest.raises(ValueError, match=rf"class folder .*val/{WNIDS[1]} is missing or holds no"):
        dataset_files("imagenette", root)


@pytest.mark.parametrize("shape", ["1xN", "Nx1"])
@pytest.mark.parametrize("place", [".", "devkit"])
def test_cars_reads_either_struct_shape_and_either_test_label_place(tmp_path, shape, place):
    want_train, want_test = make_cars(tmp_path, shape=shape, test_labels_in=place)
    assert dataset_files("cars", tmp_path) == (want_train, want_test, CARS_CLASSES)
    assert (len(want_train), len(want_test)) == (7, 3)
    assert [p.name for p, _ in want_test] == ["00001.jpg", "00002.jpg", "00003.jpg"]


@pytest.mark.parametrize("shape", ["1xN", "Nx1"])
@pytest.mark.parametrize("lists", ["lists", "."])
def test_dogs_reads_either_list_shape_and_place(tmp_path, shape, lists):
    want_train, want_test = make_dogs(tmp_path, shape=shape, lists=lists)
    assert dataset_files("dogs", tmp_path) == (want_train, want_test, DOGS_CLASSES)
    assert (len(want_train), len(want_test)) == (6, 3)


def test_one_sample_mat_files_read_like_longer_ones(tmp_path):
    """A 1x1 struct or cell (loadmat keeps it 2-D) is one sample, not a scalar."""
    _, test = make_cars(tmp_path)
    savemat(
        tmp_path / "cars_test_annos_withlabels.mat",
        {"annotations": _cars_annotations(test[:1], "1xN")},
    )
    assert dataset_files("cars", tmp_path)[1] == test[:1]


def _rewrite(path: Path, change) -> None:
    """Load a .mat file, let change(variables) edit the dict, save it back."""
    variables = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    change(variables)
    savemat(path, variables)


def _set_second_class(number: int):
    def change(v):
        v["annotations"][0, 1]["class"] = np.uint8(number)

    return change


def _drop_class_field(v):  # as in the devkit's cars_test_annos.mat, which has no labels
    old = v["annotations"]
    fields = [f for f in old.dtype.names if f != "class"]
    v["annotations"] = np.zeros(old.shape, dtype=[(f, object) for f in fields])
    for f in fields:
        v["annotations"][f] = old[f]


def _keep_labels_except(label: int):
    def change(v):
        keep = v["labels"].reshape(-1) != label
        v["file_list"], v["labels"] = v["file_list"][keep], v["labels"][keep]

    return change


def _set(key: str, update):
    def change(v):
        v[key] = update(v[key])

    return change


TRAIN_ANNOS, TEST_ANNOS = "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat"
TRAIN_LIST, TEST_LIST = "lists/train_list.mat", "lists/test_list.mat"
BAD_ANNOTATIONS = {
    "cars class 0": (
        {TRAIN_ANNOS: _set_second_class(0)},
        r"annotation 2: class 0 is not a class number in 1\.\.3",
    ),
    "cars class 4": (
        {TRAIN_ANNOS: _set_second_class(4)},
        r"annotation 2: class 4 is not a class number in 1\.\.3",
    ),
    "cars unlabelled test": (
        {TEST_ANNOS: _drop_class_field},
        r"struct 'annotations' lacks field\(s\) class",
    ),
    "cars renamed struct": (
        {TRAIN_ANNOS: lambda v: v.update(annos=v.pop("annotations"))},
        r"cars_train_annos\.mat has no variable 'annotations' \(it has: annos\)",
    ),
    "dogs label count": (
        {TRAIN_LIST: _set("labels", lambda y: y[:5])},
        r"train_list\.mat: 6 files but 5 labels",
    ),
    "dogs fractional label": (
        {TRAIN_LIST: _set("labels", lambda y: np.where(y == 1, 1.5, y))},
        r"entry 1: class 1\.5 is not a class number",
    ),
    "dogs label in two folders": (  # the third breed's training files now say label 1
        {TRAIN_LIST: _set("labels", lambda y: np.where(y == 3, 1.0, y))},
        r"label 1 has files in n02085620-Chihuahua and n02116738-African",
    ),
    "dogs label gap": (  # no file of label 2 left: label 3 would silently become class 2
        {TRAIN_LIST: _keep_labels_except(2), TEST_LIST: _keep_labels_except(2)},
        r"the labels are not 1\.\.2 without gaps",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ANNOTATIONS))
def test_bad_annotations_are_named(tmp_path, case):
    name = case.split()[0]
    MAKERS[name][0](tmp_path)
    changes, match = BAD_ANNOTATIONS[case]
    for relpath, change in changes.items():
        _rewrite(tmp_path / relpath, change)
    with pytest.raises(ValueError, match=match) as err:
        dataset_files(name, tmp_path)
    assert str(err.value).startswith(f"{name} at {tmp_path}")


def test_damaged_mat_file_is_named(tmp_path):
    make_cars(tmp_path)
    (tmp_path / "devkit" / "cars_meta.mat").write_bytes(b"MATLAB? no, a truncated download")
    with pytest.raises(ValueError, match=r"cars_meta\.mat is not a readable \.mat file"):
        dataset_files("cars", tmp_path)


def _labels(path: Path) -> list[int]:
    from ffcv.reader import Reader

    return [int(label) for _, label in Reader(str(path)).metadata]


@pytest.mark.parametrize("name", ["cub", "cars"])
def test_convert_round_trip(tmp_path, name):
    pytest.importorskip("ffcv")
    from fastrft.data.convert import beton_info, convert

    make, classes = MAKERS[name]
    root = tmp_path / name
    want_train, want_val = make(root)
    paths = convert(root, tmp_path / "out" / name, source=name, progress=False)
    for split, want in (("train", want_train), ("val", want_val)):
        info = beton_info(paths[split])
        assert info.num_samples == len(want)
        assert info.num_classes == 3
        assert (info.min_height, info.max_width) == (6, 8)
        assert _labels(paths[split]) == [y for _, y in want]
    assert json.loads(info.classes_file.read_text())["classes"] == classes


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
