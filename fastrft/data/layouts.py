"""Named datasets in the layout their authors distribute them, as lists of labelled image files.

    train, val, classes = dataset_files("cub", "data/CUB_200_2011")
    # train/val: [(image path, label)], labels 0..len(classes)-1; classes: names by label

``fastrft.datasets.DATASETS`` maps each supported name to a description of the layout it
expects (used in the docs and in the ValueError raised when a root does not match).
fastrft.data.convert accepts these names as ``source=``. A dataset without an official split
returns an empty val list; the converter then draws its seeded ``val_fraction`` split.
Stanford Cars and Dogs ship their annotations as MATLAB .mat files, read with
``scipy.io.loadmat``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fastrft.datasets import DATASETS

if TYPE_CHECKING:  # numpy is imported on use, by the readers that need it
    import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


Files = list[tuple[Path, int]]
"""(image path, label) pairs, in the dataset's own order."""


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


def _first_file(name: str, root: Path, candidates: list[Path]) -> Path:
    """The first of candidates that exists; else an error naming them all."""
    for path in candidates:
        if path.is_file():
            return path
    raise _fail(name, root, f"missing file {' or '.join(str(p) for p in candidates)}")


def _mat_array(name: str, root: Path, path: Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB file as a flat array: 1xN and Nx1 read the same."""
    import numpy as np
    from scipy.io import loadmat

    # loadmat's defaults (squeeze_me=False, struct_as_record=True) keep every value an array,
    # even 1x1 ones, and structs as record arrays; _mat_scalar unwraps the cells
    _need_file(name, root, path)
    try:
        variables = loadmat(path)
    except Exception as err:  # damaged files raise MatReadError, IndexError, ValueError, ...
        raise _fail(name, root, f"{path} is not a readable .mat file ({err!r})") from err
    if key not in variables:
        found = ", ".join(k for k in variables if not k.startswith("__")) or "none"
        raise _fail(name, root, f"{path} has no variable {key!r} (it has: {found})")
    return np.asarray(variables[key]).reshape(-1)


def _mat_scalar(name: str, root: Path, value: Any, where: str) -> Any:
    """The one Python value inside MATLAB's nested 1x1 wrappers (a cell, a char array)."""
    import numpy as np

    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise _fail(name, root, f"{where}: expected one value, got shape {value.shape}")
        value = value.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


def _mat_label(name: str, root: Path, value: Any, where: str, num_classes: int | None) -> int:
    """A 1-based MATLAB class number (at most num_classes, when given) as a 0-based label."""
    number = _mat_scalar(name, root, value, where)
    whole = isinstance(number, int) or (isinstance(number, float) and number.is_integer())
    whole = whole and number >= 1
    if not whole or (num_classes is not None and number > num_classes):
        span = f"1..{num_classes}" if num_classes is not None else "1, 2, ..."
        raise _fail(name, root, f"{where}: class {number!r} is not a class number in {span}")
    return int(number) - 1


def _mat_records(
    name: str, root: Path, path: Path, key: str, fields: tuple[str, ...]
) -> np.ndarray:
    """The struct array ``key`` of a MATLAB file, after checking it has ``fields``."""
    records = _mat_array(name, root, path, key)
    missing = [f for f in fields if f not in (records.dtype.names or ())]
    if missing:
        raise _fail(name, root, f"{path}: struct {key!r} lacks field(s) {', '.join(missing)}")
    return records


def _cars(root: Path) -> tuple[Files, Files, list[str]]:
    name = "cars"
    devkit = root / "devkit"
    meta = devkit / "cars_meta.mat"
    names = _mat_array(name, root, meta, "class_names")
    classes = [str(_mat_scalar(name, root, c, f"{meta} class_names")) for c in names]

    def part(annos: Path, folder: Path) -> Files:
        records = _mat_records(name, root, annos, "annotations", ("fname", "class"))
        _need_dir(name, root, folder)
        out: Files = []
        for i, record in enumerate(records):
            where = f"{annos} annotation {i + 1}"
            label = _mat_label(name, root, record["class"], where, len(classes))
            fname = str(_mat_scalar(name, root, record["fname"], where))
            out.append((_existing(name, root, folder / fname), label))
        return out

    test_annos = [
        root / "cars_test_annos_withlabels.mat",
        devkit / "cars_test_annos_withlabels.mat",
    ]
    train = part(devkit / "cars_train_annos.mat", root / "cars_train")
    return train, part(_first_file(name, root, test_annos), root / "cars_test"), classes


def _dogs(root: Path) -> tuple[Files, Files, list[str]]:
    name = "dogs"
    images = _need_dir(name, root, root / "Images")

    def part(list_name: str) -> list[tuple[str, int]]:
        path = _first_file(name, root, [root / "lists" / list_name, root / list_name])
        files = _mat_array(name, root, path, "file_list")
        labels = _mat_array(name, root, path, "labels")
        if len(files) != len(labels):
            raise _fail(name, root, f"{path}: {len(files)} files but {len(labels)} labels")
        entries = [f"{path} entry {i + 1}" for i in range(len(files))]
        return [
            (str(_mat_scalar(name, root, f, where)), _mat_label(name, root, y, where, None))
            for f, y, where in zip(files, labels, entries, strict=True)
        ]

    train, test = part("train_list.mat"), part("test_list.mat")
    classes = _folder_per_label(name, root, train + test)

    def files(pairs: list[tuple[str, int]]) -> Files:
        return [(_existing(name, root, images / relpath), label) for relpath, label in pairs]

    return files(train), files(test), classes


def _folder_per_label(name: str, root: Path, pairs: list[tuple[str, int]]) -> list[str]:
    """Class names from relative paths: label i's files must all sit in one folder, its own."""
    folder_of: dict[int, str] = {}
    for relpath, label in pairs:
        folder = PurePosixPath(relpath).parent.as_posix()
        if folder_of.setdefault(label, folder) != folder:
            raise _fail(
                name, root, f"label {label + 1} has files in {folder_of[label]} and {folder}"
            )
    if sorted(folder_of) != list(range(len(folder_of))):
        raise _fail(name, root, f"the labels are not 1..{len(folder_of)} without gaps")
    classes = [folder_of[label] for label in range(len(folder_of))]
    if len(set(classes)) != len(classes):
        shared = sorted({c for c in classes if classes.count(c) > 1})
        raise _fail(name, root, f"folder(s) {', '.join(shared)} hold files of several labels")
    return classes


_READERS: dict[str, Callable[[Path], tuple[Files, Files, list[str]]]] = {
    "cub": _cub,
    "aircraft": _aircraft,
    "caltech256": _caltech256,
    "imagenette": _imagenette,
    "cars": _cars,
    "dogs": _dogs,
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


__all__ = ["Files", "dataset_files"]
