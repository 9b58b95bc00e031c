"""Named datasets in the layout their authors distribute them, as lists of labelled image files.

    train, val, classes = dataset_files("cub", "data/CUB_200_2011")
    # train/val: [(image path, label)], labels 0..len(classes)-1; classes: names by label

``DATASETS`` maps each supported name to a description of the layout it expects (used in the
docs and in the ValueError raised when a root does not match). fastrft.data.convert accepts
these names as ``source=``. A dataset without an official split returns an empty val list;
the converter then draws its seeded ``val_fraction`` split.

Not yet supported: Stanford Cars and Stanford Dogs, which ship their annotations as MATLAB
.mat files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


Files = list[tuple[Path, int]]
"""(image path, label) pairs, in the dataset's own order."""

DATASETS: dict[str, str] = {
    "cub": (
        "CUB-200-2011: ROOT/images.txt ('<id> <relpath>'), ROOT/image_class_labels.txt "
        "('<id> <class id>'), ROOT/train_test_split.txt ('<id> <1=train|0=test>'), "
        "ROOT/classes.txt ('<class id> <name>'), images under ROOT/images/<relpath>; "
        "the test split is val"
    ),
    "aircraft": (
        "FGVC-Aircraft (variant level, 100 classes): ROOT/data/variants.txt (one name per line), "
        "ROOT/data/images_variant_trainval.txt and ROOT/data/images_variant_test.txt "
        "('<id> <variant name>'), images ROOT/data/images/<id>.jpg; trainval is train, "
        "test is val"
    ),
    "caltech256": (
        "Caltech-256: ROOT/256_ObjectCategories/<NNN.name>/*.jpg (257 folders with "
        "257.clutter); no official split: everything is train and the converter draws a "
        "seeded val_fraction split"
    ),
    "imagenette": (
        "Imagenette: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (an ImageFolder with "
        "its own split); class names are the wnids"
    ),
}


def _fail(name: str, root: Path, problem: str) -> ValueError:
    return ValueError(f"{name} at {root}: {problem}. Expected layout: {DATASETS[name]}")


def _need_file(name: str, root: Path, path: Path) -> Path:
    if not path.is_file():
        raise _fail(name, root, f"missing file {path}")
    return path


def _need_dir(name: str, root: Path, path: Path) -> Path:
    if not path.is_dir():
        raise _fail(name, root, f"missing folder {path}")
    return path


def _pairs(name: str, root: Path, path: Path) -> list[tuple[str, str]]:
    """Non-blank lines of an annotation file split at the first space: (key, rest)."""
    pairs = []
    text = _need_file(name, root, path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise _fail(name, root, f"{path} line {number}: expected '<id> <value>', got {line!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


def _existing(name: str, root: Path, path: Path) -> Path:
    if not path.is_file():
        raise _fail(name, root, f"listed image {path} is missing")
    return path


def _images_in(name: str, root: Path, folder: Path) -> list[Path]:
    files = (
        sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if not files:
        raise _fail(name, root, f"class folder {folder} is missing or holds no images")
    return files


def _cub(root: Path) -> tuple[Files, Files, list[str]]:
    name = "cub"
    classes = _pairs(name, root, root / "classes.txt")
    label_of_class = {cid: i for i, (cid, _) in enumerate(classes)}
    images = _pairs(name, root, root / "images.txt")
    labels = dict(_pairs(name, root, root / "image_class_labels.txt"))
    split = dict(_pairs(name, root, root / "train_test_split.txt"))
    folder = _need_dir(name, root, root / "images")
    train: Files = []
    val: Files = []
    for image_id, relpath in images:
        for what, table in (("image_class_labels.txt", labels), ("train_test_split.txt", split)):
            if image_id not in table:
                raise _fail(name, root, f"image id {image_id} is not in {root / what}")
        if labels[image_id] not in label_of_class:
            raise _fail(
                name, root, f"image id {image_id} has class {labels[image_id]}, not in classes.txt"
            )
        if split[image_id] not in ("0", "1"):
            raise _fail(name, root, f"image id {image_id}: split {split[image_id]!r} is not 0 or 1")
        pair = (_existing(name, root, folder / relpath), label_of_class[labels[image_id]])
        (train if split[image_id] == "1" else val).append(pair)
    return train, val, [class_name for _, class_name in classes]


def _aircraft(root: Path) -> tuple[Files, Files, list[str]]:
    name = "aircraft"
    data = root / "data"
    variants_file = _need_file(name, root, data / "variants.txt")
    classes = [line.strip() for line in variants_file.read_text(encoding="utf-8").splitlines()]
    classes = [c for c in classes if c]
    label_of = {c: i for i, c in enumerate(classes)}
    folder = _need_dir(name, root, data / "images")

    def part(file_name: str) -> Files:
        path = data / file_name
        out: Files = []
        for image_id, variant in _pairs(name, root, path):
            if variant not in label_of:
                raise _fail(name, root, f"{path}: variant {variant!r} is not in {variants_file}")
            out.append((_existing(name, root, folder / f"{image_id}.jpg"), label_of[variant]))
        return out

    return part("images_variant_trainval.txt"), part("images_variant_test.txt"), classes


def _caltech256(root: Path) -> tuple[Files, Files, list[str]]:
    name = "caltech256"
    base = _need_dir(name, root, root / "256_ObjectCategories")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise _fail(name, root, f"no class folders in {base}")
    train = [(p, i) for i, c in enumerate(classes) for p in _images_in(name, root, base / c)]
    return train, [], classes


def _imagenette(root: Path) -> tuple[Files, Files, list[str]]:
    name = "imagenette"
    train_dir = _need_dir(name, root, root / "train")
    val_dir = _need_dir(name, root, root / "val")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise _fail(name, root, f"no class folders in {train_dir}")
    extra = sorted({p.name for p in val_dir.iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise _fail(name, root, f"{val_dir} has classes not in {train_dir}: {', '.join(extra)}")

    def part(base: Path) -> Files:
        return [(p, i) for i, c in enumerate(classes) for p in _images_in(name, root, base / c)]

    return part(train_dir), part(val_dir), classes


_READERS: dict[str, Callable[[Path], tuple[Files, Files, list[str]]]] = {
    "cub": _cub,
    "aircraft": _aircraft,
    "caltech256": _caltech256,
    "imagenette": _imagenette,
}


def dataset_files(name: str, root: str | Path) -> tuple[Files, Files, list[str]]:
    """(train, val, class names) of the named dataset stored under ``root`` in its native layout.

    train and val are [(image path, label)] in the dataset's own order, labels 0..C-1 indexing
    the class names. val is empty for a dataset without an official split. Raises ValueError
    naming the dataset, the missing or inconsistent file or folder, and the expected layout
    (see ``DATASETS``) when ``root`` does not match, or when ``name`` is unknown.
    """
    if name not in _READERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    root = Path(root)
    if not root.is_dir():
        raise _fail(name, root, f"root folder {root} does not exist")
    return _READERS[name](root)


__all__ = ["DATASETS", "Files", "dataset_files"]
