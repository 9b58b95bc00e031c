"""Readers of every source format fastrft takes: image files and arrays with their labels,
the source's own train/val split where it has one, and the class names.

imagefolder  ROOT/train/<class>/* + ROOT/val/<class>/* (or test/), or ROOT/<class>/* (no
             split of its own); classes sorted; any PIL format, converted to RGB
cifar        a CIFAR-10 (data_batch_1..5 + test_batch) or CIFAR-100 (train + test,
             'fine_labels') python-batch folder; test is the val split
npz          x_train/y_train/x_val/y_val, or images/labels (no split of its own); uint8 NHWC
             or NCHW, grey (1 channel) or RGB
idx          a folder of the four MNIST-style IDX files (fastrft.data.idx); t10k is val
fashion_mnist
             those of Fashion-MNIST, with its class names (fastrft.datasets.IDX_DATASETS)
cub, aircraft, caltech256, imagenette, cars, dogs
             a named dataset in its authors' layout (fastrft.datasets.DATASETS)

Both the FFCV converter (fastrft.data.convert) and the in-memory sources
(fastrft.data.sources) read through these, so a dataset means the same thing to both.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fastrft.data.layouts import IMAGE_SUFFIXES, dataset_files
from fastrft.datasets import DATASETS, IDX_DATASETS

from .idx import find_idx_files, read_idx_split

SourceName = Literal[
    "auto",
    "imagefolder",
    "cifar",
    "npz",
    "idx",
    "fashion_mnist",
    "cub",
    "aircraft",
    "caltech256",
    "imagenette",
    "cars",
    "dogs",
]
_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


# --------------------------------------------------------------------------- samples


@dataclass
class ArraySplit:
    """Images already in memory: uint8 (N, H, W, C) and int64 labels. Grey images (C = 1)
    stay grey here, a third of the memory; indexing gives every image as RGB."""

    images: np.ndarray
    labels: np.ndarray
    max_side: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = self.images[i]
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        return _limit_side(rgb, self.max_side), int(self.labels[i])

    def subset(self, idx: np.ndarray) -> ArraySplit:
        return ArraySplit(self.images[idx], self.labels[idx], self.max_side)


@dataclass
class FileSplit:
    """Image files, decoded on demand (in FFCV's writer processes)."""

    paths: list[Path]
    labels: np.ndarray
    max_side: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return _limit_side(read_rgb(self.paths[i]), self.max_side), int(self.labels[i])

    def subset(self, idx: np.ndarray) -> FileSplit:
        return FileSplit([self.paths[j] for j in idx], self.labels[idx], self.max_side)


Split = ArraySplit | FileSplit
Source = tuple[Split, Split | None, list[str] | None]
"""(train, val or None without a split of its own, class names by label or None)."""


def read_rgb(path: Path) -> np.ndarray:
    """The whole image as uint8 (H, W, 3); ValueError naming the file if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB")).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable or truncated image ({err})") from err


def _limit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink so the longer side is at most max_side, keeping the aspect ratio."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC, reducing_gap=3.0))


# --------------------------------------------------------------------------- sources


def detect_source(src: Path) -> Literal["imagefolder", "cifar", "npz", "idx"]:
    """The source kind a path holds: a .npz file, a CIFAR batch folder, a folder of IDX files,
    else an ImageFolder."""
    if src.is_file() and src.suffix == ".npz":
        return "npz"
    if src.is_dir() and any(src.glob("*-images-idx3-ubyte*")):
        return "idx"
    if src.is_dir() and (
        (src / "data_batch_1").is_file() or ((src / "train").is_file() and (src / "test").is_file())
    ):
        return "cifar"
    return "imagefolder"


def _class_files(root: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = (
            sorted(
                p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if folder.is_dir()
            else []
        )
        if not files:
            raise ValueError(f"{folder}: class folder is missing or holds no images")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _class_names(root: Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{root}: no class folders (expected ROOT/<class>/<image files>)")
    return names


def _imagefolder(root: Path) -> Source:
    if (root / "train").is_dir():
        classes = _class_names(root / "train")
        train = FileSplit(*_class_files(root / "train", classes))
        held_out = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
        if held_out is None:
            return train, None, classes
        unknown = sorted(set(_class_names(held_out)) - set(classes))
        if unknown:  # their images would silently be left out
            raise ValueError(
                f"{held_out}: class folders {', '.join(unknown[:5])} are not in "
                f"{root / 'train'}; every validation class must be a training class"
            )
        return train, FileSplit(*_class_files(held_out, classes)), classes
    classes = _class_names(root)
    return FileSplit(*_class_files(root, classes)), None, classes


def _layout(name: str) -> Callable[[Path], Source]:
    """A reader for a named dataset layout; an empty val list means no split of its own."""

    def read(root: Path) -> Source:
        def split(files: list[tuple[Path, int]]) -> FileSplit:
            return FileSplit([p for p, _ in files], np.asarray([y for _, y in files], np.int64))

        train, val, classes = dataset_files(name, root)
        return split(train), (split(val) if val else None), classes

    return read


def _refused(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f"refused {what} (a CIFAR batch holds only dicts, lists, bytes, numbers and numpy arrays "
        "of plain numbers)"
    )


def _latin1(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol <= 2, held to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise _refused(f"global _codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _plain(dtype: Any) -> np.dtype:
    """A number, bytes or str dtype rebuilt from its name. A pickled dtype's state is the file's
    to forge: an object field whose flags say it holds none would read file bytes as pointers."""
    if (
        not isinstance(dtype, np.dtype)
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.kind not in "biufcSU"
    ):
        raise _refused(f"numpy dtype {dtype!r}")
    return np.dtype(dtype.str)


class _LoadedArray(np.ndarray):
    """An array being unpickled; its state's dtype is rebuilt plain before numpy reads the
    bytes. The readers' np.asarray turns it back into a plain ndarray."""

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        super().__setstate__(tuple(_plain(v) if isinstance(v, np.dtype) else v for v in state))


def _ndarray(*args: Any) -> None:
    """Stands for numpy.ndarray: _reconstruct's first argument; never called, as
    ndarray(shape, dtype, buffer) would read an object dtype's pointers from the file."""
    raise _refused("call of numpy.ndarray")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """What an array, dtype or scalar pickle names, under numpy 1.x's and 2.x's module names:
    numpy's own functions (from its reductions, so either version resolves them), each given
    only plain dtypes."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles arrays through it
    scalar = np.int64(0).__reduce__()[0]

    def reconstruct_plain(subtype: Any, shape: Any, typecode: Any) -> _LoadedArray:
        if subtype is not _ndarray:
            raise _refused(f"array subtype {subtype!r}")
        return reconstruct(_LoadedArray, (0,), b"b")  # the state sets shape and dtype

    admitted = {
        ("numpy", "ndarray"): _ndarray,
        # always a copy: the pickle's state (BUILD) then cannot alter numpy's shared dtypes
        ("numpy", "dtype"): lambda spec, align=False, copy=False: np.dtype(spec, align, True),
    }
    for core in ("numpy.core", "numpy._core"):
        admitted[(f"{core}.multiarray", "_reconstruct")] = reconstruct_plain
        admitted[(f"{core}.multiarray", "scalar")] = lambda dtype, *a: scalar(_plain(dtype), *a)
        admitted[(f"{core}.numeric", "_frombuffer")] = lambda buf, dtype, *a: frombuffer(
            buf, _plain(dtype), *a
        )
    return admitted


_CIFAR_GLOBALS = {**_numpy_globals(), ("_codecs", "encode"): _latin1}


class _CifarUnpickler(pickle.Unpickler):
    """Loads what CIFAR batches hold (dicts, lists, str, bytes, numbers, numpy arrays, dtypes
    and scalars of plain numbers) and refuses every other global, so a hostile file can
    neither run code nor forge pointers."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _refused(f"global {module}.{name}") from None


def _unpickle(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CIFAR batch file not found")
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as err:  # the content is arbitrary: any parse failure lands here
        raise ValueError(f"{path}: not a readable CIFAR batch ({_one_line(err)})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return batch


def _one_line(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> ArraySplit:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: CIFAR batch lacks b'data' or {label_key!r}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: CIFAR data must be uint8 (N, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ArraySplit(np.ascontiguousarray(images), _checked_labels(labels, path, num_classes))


def _cifar_names(path: Path, key: bytes) -> list[str] | None:
    """Class names from CIFAR's meta file, None when it is absent."""
    if not path.is_file():
        return None
    meta = _unpickle(path)
    if key not in meta:
        raise ValueError(f"{path}: CIFAR meta file lacks {key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _cifar(root: Path) -> Source:
    if (root / "data_batch_1").is_file():  # CIFAR-10
        parts = [_cifar_batch(root / name, b"labels", 10) for name in _CIFAR10_BATCHES]
        train = ArraySplit(
            np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
        )
        val = _cifar_batch(root / "test_batch", b"labels", 10)
        return train, val, _cifar_names(root / "batches.meta", b"label_names")
    return (
        _cifar_batch(root / "train", b"fine_labels", 100),
        _cifar_batch(root / "test", b"fine_labels", 100),
        _cifar_names(root / "meta", b"fine_label_names"),
    )


def _checked_labels(labels: np.ndarray, where: Path, num_classes: int | None = None) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be 1-D integers, got {labels.dtype} {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{where}: negative label {int(labels.min())}")
    if num_classes is not None and len(labels) and labels.max() >= num_classes:
        raise ValueError(f"{where}: label {int(labels.max())} is outside [0, {num_classes})")
    return labels.astype(np.int64)


def _as_nhwc(a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(
            f"{path}: images must be uint8 (N, H, W, C) or (N, C, H, W), got {a.dtype} {a.shape}"
        )
    if a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: images need 1 or 3 channels, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _npz_split(x: np.ndarray, y: np.ndarray, path: Path) -> ArraySplit:
    images, labels = _as_nhwc(x, path), _checked_labels(np.asarray(y), path)
    if len(images) != len(labels):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return ArraySplit(images, labels)


def _npz(path: Path) -> Source:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    if all(k in arrays for k in ("x_train", "y_train", "x_val", "y_val")):
        return (
            _npz_split(arrays["x_train"], arrays["y_train"], path),
            _npz_split(arrays["x_val"], arrays["y_val"], path),
            None,
        )
    if all(k in arrays for k in ("images", "labels")):
        return _npz_split(arrays["images"], arrays["labels"], path), None, None
    raise ValueError(
        f"{path}: expected arrays x_train, y_train, x_val, y_val or images, labels; "
        f"found {sorted(arrays)}"
    )


def _idx_split(files: dict[str, Path], num_classes: int | None) -> ArraySplit:
    images, labels = read_idx_split(files["images"], files["labels"])
    return ArraySplit(images, _checked_labels(labels, files["labels"], num_classes))


def _idx(root: Path, classes: tuple[str, ...] | None = None) -> Source:
    files, num_classes = find_idx_files(root), len(classes) if classes else None
    train, val = (_idx_split(files[split], num_classes) for split in ("train", "val"))
    return train, val, list(classes) if classes else None


def _idx_dataset(name: str) -> Callable[[Path], Source]:
    return lambda root: _idx(root, IDX_DATASETS[name].classes)


def load_source(src: Path, source: str) -> Source:
    if not src.exists():
        hint = f": {IDX_DATASETS[source].how_to_get}" if source in IDX_DATASETS else ""
        raise FileNotFoundError(f"{src}: no such file or folder{hint}")
    if src.is_dir() and not any(src.iterdir()):
        raise ValueError(f"{src}: folder is empty")
    kind = detect_source(src) if source == "auto" else source
    readers: dict[str, Callable[[Path], Source]] = {
        "imagefolder": _imagefolder,
        "cifar": _cifar,
        "npz": _npz,
        "idx": _idx,
        **{name: _idx_dataset(name) for name in IDX_DATASETS},
        **{name: _layout(name) for name in DATASETS},
    }
    if kind not in readers:
        raise ValueError(f"source must be one of auto, {', '.join(readers)}; got {source!r}")
    return readers[kind](src)


def largest_label(*splits: Split | None) -> int:
    return max((int(s.labels.max()) for s in splits if s is not None and len(s)), default=-1)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split, each sorted; the same draw as fastrft.data.sources."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = max(round(val_fraction * n), 1)
    if n_val >= n:
        raise ValueError(f"{n} samples are too few to split with val_fraction={val_fraction}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])
