"""Convert an image dataset into two FFCV .beton files (train and val), and describe one.

    convert("data/pets", "data/pets")   ->  data/pets.train.beton, data/pets.val.beton
    beton_info("data/pets.val.beton")   ->  BetonInfo(num_samples=..., num_classes=..., ...)

Sources (``source="auto"`` picks one from the path):

imagefolder  ROOT/train/<class>/* + ROOT/val/<class>/*, or ROOT/<class>/* (split by
             val_fraction); classes sorted; any PIL format, converted to RGB
cifar        a CIFAR-10 (data_batch_1..5 + test_batch) or CIFAR-100 (train + test,
             'fine_labels') python-batch folder; test is the val split
npz          x_train/y_train/x_val/y_val, or images/labels split by val_fraction
             (the same keys as fastrft.data.sources); uint8 NHWC or NCHW
cub, aircraft, caltech256, imagenette, cars, dogs
             a named dataset in its authors' layout (fastrft.data.layouts.DATASETS), read
             like an imagefolder; never picked by "auto"

Each .beton holds two fields, ``image`` (RGBImageField, raw pixels or JPEG) and ``label``
(IntField). Beside them, STEM.classes.json records the number of classes and their names
(null for npz, and for CIFAR without its meta file); ``beton_info`` and the FFCV loader
then reject a label outside [0, num_classes) naming the file.

Every image is decoded once in this process before writing: FFCV's writer waits forever on
a worker that raised, so bad files are found (and raised or skipped) first. Files are
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fastrft.data.layouts import DATASETS, IMAGE_SUFFIXES, dataset_files

SourceName = Literal[
    "auto",
    "imagefolder",
    "cifar",
    "npz",
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
class _ArraySplit:
    """Images already in memory: uint8 (N, H, W, 3) and int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    max_side: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return _limit_side(self.images[i], self.max_side), int(self.labels[i])

    def subset(self, idx: np.ndarray) -> _ArraySplit:
        return _ArraySplit(self.images[idx], self.labels[idx], self.max_side)


@dataclass
class _FileSplit:
    """Image files, decoded on demand (in FFCV's writer processes)."""

    paths: list[Path]
    labels: np.ndarray
    max_side: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return _limit_side(_read_rgb(self.paths[i]), self.max_side), int(self.labels[i])

    def subset(self, idx: np.ndarray) -> _FileSplit:
        return _FileSplit([self.paths[j] for j in idx], self.labels[idx], self.max_side)


_Split = _ArraySplit | _FileSplit
_Source = tuple[_Split, _Split | None, list[str] | None]
"""(train, val or None without a split of its own, class names by label or None)."""


def _read_rgb(path: Path) -> np.ndarray:
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


def detect_source(src: Path) -> Literal["imagefolder", "cifar", "npz"]:
    """The source kind a path holds: a .npz file, a CIFAR batch folder, else an ImageFolder."""
    if src.is_file() and src.suffix == ".npz":
        return "npz"
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


def _imagefolder(root: Path) -> _Source:
    if (root / "train").is_dir():
        classes = _class_names(root / "train")
        train = _FileSplit(*_class_files(root / "train", classes))
        val = _FileSplit(*_class_files(root / "val", classes)) if (root / "val").is_dir() else None
        return train, val, classes
    classes = _class_names(root)
    return _FileSplit(*_class_files(root, classes)), None, classes


def _layout(name: str) -> Callable[[Path], _Source]:
    """A reader for a named dataset layout; an empty val list means no split of its own."""

    def read(root: Path) -> _Source:
        def split(files: list[tuple[Path, int]]) -> _FileSplit:
            return _FileSplit([p for p, _ in files], np.asarray([y for _, y in files], np.int64))

        train, val, classes = dataset_files(name, root)
        return split(train), (split(val) if val else None), classes

    return read


def _unpickle(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CIFAR batch file not found")
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable CIFAR batch ({err})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return batch


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> _ArraySplit:
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
    return _ArraySplit(np.ascontiguousarray(images), _checked_labels(labels, path, num_classes))


def _cifar_names(path: Path, key: bytes) -> list[str] | None:
    """Class names from CIFAR's meta file, None when it is absent."""
    if not path.is_file():
        return None
    meta = _unpickle(path)
    if key not in meta:
        raise ValueError(f"{path}: CIFAR meta file lacks {key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _cifar(root: Path) -> _Source:
    if (root / "data_batch_1").is_file():  # CIFAR-10
        parts = [_cifar_batch(root / name, b"labels", 10) for name in _CIFAR10_BATCHES]
        train = _ArraySplit(
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
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] != 3:
        raise ValueError(f"{path}: images need 1 or 3 channels, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _npz_split(x: np.ndarray, y: np.ndarray, path: Path) -> _ArraySplit:
    images, labels = _as_nhwc(x, path), _checked_labels(np.asarray(y), path)
    if len(images) != len(labels):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return _ArraySplit(images, labels)


def _npz(path: Path) -> _Source:
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


def _load_source(src: Path, source: str) -> _Source:
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if src.is_dir() and not any(src.iterdir()):
        raise ValueError(f"{src}: folder is empty")
    kind = detect_source(src) if source == "auto" else source
    readers: dict[str, Callable[[Path], _Source]] = {
        "imagefolder": _imagefolder,
        "cifar": _cifar,
        "npz": _npz,
        **{name: _layout(name) for name in DATASETS},
    }
    if kind not in readers:
        raise ValueError(f"source must be one of auto, {', '.join(readers)}; got {source!r}")
    return readers[kind](src)


def _largest_label(*splits: _Split | None) -> int:
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


# --------------------------------------------------------------------------- checks


def _drop_unreadable(split: _Split, on_bad_image: str, progress: bool, name: str) -> _Split:
    """Decode every file once; raise on the first bad one, or drop bad ones with a warning."""
    if isinstance(split, _ArraySplit):
        return split
    keep, bad = [], []
    with _progress_bar(f"checking {name}", len(split), progress) as advance:
        for i, path in enumerate(split.paths):
            try:
                _read_rgb(path)
                keep.append(i)
            except ValueError:
                if on_bad_image == "error":
                    raise
                bad.append(path)
            advance(1)
    if bad:
        shown = ", ".join(str(p) for p in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {name}: {shown}", stacklevel=3)
    if not keep:
        raise ValueError(f"{name}: no readable images left")
    return split.subset(np.asarray(keep, dtype=np.int64))


# --------------------------------------------------------------------------- writing


@contextmanager
def _progress_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields a function that advances it (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class _TqdmShim:
    """Stands in for the tqdm bar FFCV's writer draws, forwarding updates to ours."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance

    def update(self, n: int) -> None:
        self.advance(n)

    def close(self) -> None:
        pass


class _WorkerWatch:
    """Stands in for the sleep in FFCV's writer's wait loop, which waits forever once a worker
    has died. Once every worker is gone, the loop reads the final count and sleeps once more
    before it exits, so a third poll in a row with no worker alive means samples are missing."""

    def __init__(self, path: Path) -> None:
        self.path, self.idle_polls = path, 0

    def __call__(self, seconds: float) -> None:
        time.sleep(seconds)
        self.idle_polls = 0 if multiprocessing.active_children() else self.idle_polls + 1
        if self.idle_polls >= 3:
            raise RuntimeError(
                f"{self.path}: an FFCV writer worker died before writing every sample "
                "(its traceback is above)"
            )


def _write_beton(path: Path, split: _Split, opts: dict[str, Any], progress: bool) -> None:
    import ffcv.writer
    from ffcv.fields import IntField, RGBImageField

    fields = {
        "image": RGBImageField(write_mode=opts["mode"], jpeg_quality=opts["jpeg_quality"]),
        "label": IntField(),
    }
    writer = ffcv.writer.DatasetWriter(str(path), fields, num_workers=opts["workers"])
    saved = ffcv.writer.tqdm, ffcv.writer.sleep
    with _progress_bar(f"writing {opts['name']}", len(split), progress) as advance:
        ffcv.writer.tqdm = lambda total=None, **kw: _TqdmShim(advance)
        ffcv.writer.sleep = _WorkerWatch(path)
        try:
            writer.from_indexed_dataset(split)
        except BaseException:
            _release_shared_memory(writer)
            raise
        finally:
            ffcv.writer.tqdm, ffcv.writer.sleep = saved


def _release_shared_memory(writer: Any) -> None:
    """Free the metadata block a failed FFCV write leaves behind (it frees it on success)."""
    block = getattr(writer, "metadata_sm", None)
    if block is not None and not isinstance(block, int):
        block.close()
        block.unlink()


def _stem(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name[: -len(".beton")]) if out.name.endswith(".beton") else out


def _check_options(mode: str, jpeg_quality: int, max_side: int | None, workers: int, bad: str):
    if mode not in ("raw", "jpg"):
        raise ValueError(f"mode must be 'raw' or 'jpg', got {mode!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if bad not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {bad!r}")


def convert(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    source: SourceName = "auto",
    mode: Literal["raw", "jpg"] = "raw",
    jpeg_quality: int = 90,
    max_side: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 1,
    on_bad_image: Literal["error", "skip"] = "error",
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``<out>.train.beton`` and ``<out>.val.beton`` from an image dataset.

    src: a .npz file, a CIFAR python-batch folder or an ImageFolder root (see the module
    docstring); ``source="auto"`` tells them apart. Or the root of a dataset named in
    fastrft.data.layouts.DATASETS, with ``source=`` its name. out: a path stem (a trailing
    ".beton" is dropped). The source's own train/val split is kept, in its order; without
    one, a seeded ``val_fraction`` split (the same draw as fastrft.data.sources), each part
    in source order.
    mode: "raw" stores exact pixels, "jpg" JPEG at ``jpeg_quality``. max_side: shrink images
    whose longer side exceeds it, keeping aspect. on_bad_image: "error" raises a ValueError
    naming the first unreadable image; "skip" drops them and warns with the count.
    Also writes ``classes_file(...)`` (STEM.classes.json: num_classes, class names or null).
    Returns {"train": path, "val": path}.
    """
    _check_options(mode, jpeg_quality, max_side, workers, on_bad_image)
    src = Path(src)
    train, val, classes = _load_source(src, source)
    num_classes = len(classes) if classes else _largest_label(train, val) + 1
    if val is None:
        train_idx, val_idx = split_indices(len(train), val_fraction, seed)
        train, val = train.subset(train_idx), train.subset(val_idx)
    splits = {"train": train, "val": val}
    for name, split in splits.items():
        split.max_side = max_side
        splits[name] = _drop_unreadable(split, on_bad_image, progress, f"{src} ({name})")

    stem = _stem(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    final = {name: stem.with_name(f"{stem.name}.{name}.beton") for name in splits}
    outputs = {**final, "classes": classes_file(final["train"])}
    temp = {name: p.with_name(f".{p.name}.{os.getpid()}.tmp") for name, p in outputs.items()}
    opts = {"mode": mode, "jpeg_quality": jpeg_quality, "workers": workers}
    try:
        for name, split in splits.items():
            _write_beton(temp[name], split, {**opts, "name": final[name].name}, progress)
        record = {"num_classes": num_classes, "classes": classes}
        temp["classes"].write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        for name, path in outputs.items():
            os.replace(temp[name], path)
    finally:
        for p in temp.values():
            p.unlink(missing_ok=True)
    return final


# --------------------------------------------------------------------------- info


@dataclass(frozen=True)
class BetonInfo:
    """What a .beton file holds, read from its header and metadata (no image is decoded)."""

    path: Path
    num_samples: int
    num_classes: int
    """from the classes file, else max label + 1 (0 for an empty file)"""
    distinct_labels: int
    min_height: int
    max_height: int
    min_width: int
    max_width: int
    mode: str
    """"raw", "jpg" or "mixed" (FFCV's smart/proportion write modes)"""
    file_bytes: int
    classes_file: Path | None
    """STEM.classes.json, written beside STEM.train/val.beton by convert; None without one"""

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.num_samples} samples, {self.num_classes} classes "
            f"({self.distinct_labels} present), images {self.min_height}-{self.max_height} x "
            f"{self.min_width}-{self.max_width} (h x w), {self.mode}, "
            f"{self.file_bytes / 2**20:.1f} MiB"
        )


def read_beton(path: str | os.PathLike[str]) -> Any:
    """FFCV's Reader for ``path``, with its failures on bad files turned into errors naming it:
    FileNotFoundError when it is missing, ValueError when unreadable or truncated."""
    from ffcv.reader import Reader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .beton file")
    try:
        reader = Reader(str(path))
        table = reader.alloc_table
        end = int((table["ptr"] + table["size"]).max()) if len(table) else 0
    except Exception as err:  # ffcv raises AssertionError, IndexError, ValueError, ... here
        raise ValueError(f"{path}: not a readable .beton file ({err!r})") from err
    size = path.stat().st_size
    truncated = int(reader.header["alloc_table_ptr"]) > size or end > size
    if truncated or len(reader.metadata) != reader.num_samples:
        raise ValueError(f"{path}: truncated or corrupted .beton file (size {size} bytes)")
    return reader


def classes_file(beton: str | os.PathLike[str]) -> Path:
    """Where convert records the classes of STEM.train.beton and STEM.val.beton:
    STEM.classes.json, {"num_classes": C, "classes": [names by label] or null}."""
    beton = Path(beton)
    stem = beton.name.removesuffix(".beton").removesuffix(".train").removesuffix(".val")
    return beton.with_name(f"{stem}.classes.json")


def _read_num_classes(record: Path, beton: Path) -> int:
    try:
        num_classes = json.loads(record.read_text(encoding="utf-8"))["num_classes"]
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise ValueError(f"{record}: unreadable classes file of {beton} ({err!r})") from err
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"{record}: num_classes must be an integer >= 0, not {num_classes!r}")
    return num_classes


def _checked_num_classes(path: Path, labels: np.ndarray) -> tuple[int, Path | None]:
    """(C, the classes file it came from or None) for a .beton's labels: C is recorded in its
    classes file (see classes_file) when there is one, else the largest label + 1.

    Raises ValueError naming the file when a label lies outside [0, C), which would otherwise
    train against the wrong class, or index out of the classifier's range on the GPU.
    """
    record = classes_file(path)
    recorded = record.is_file()
    if recorded:
        num_classes, why = _read_num_classes(record, path), f"the classes recorded in {record}"
    else:
        num_classes = int(labels.max()) + 1 if len(labels) else 0
        why = "C = largest label + 1"
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{path}: label {int(labels[i])} of sample {i} is outside [0, {num_classes}) "
            f"({why}); {len(bad)} such label(s) in all. Was it written for another class "
            "list, or damaged?"
        )
    return num_classes, record if recorded else None


def _field(reader: Any, kind: type, path: Path) -> str:
    """The metadata column of the first field of this kind (FFCV names them f0, f1, ...)."""
    for column, handler in zip(reader.metadata.dtype.names, reader.handlers.values(), strict=True):
        if isinstance(handler, kind):
            return column
    raise ValueError(f"{path}: no {kind.__name__} field (fields: {list(reader.handlers)})")


def _storage_mode(modes: np.ndarray) -> str:
    from ffcv.fields.rgb_image import IMAGE_MODES

    names = {int(v): k for k, v in IMAGE_MODES.items()}
    present = sorted({names.get(int(m), f"unknown({int(m)})") for m in np.unique(modes)})
    return present[0] if len(present) == 1 else "mixed"


def beton_info(path: str | os.PathLike[str]) -> BetonInfo:
    """Sample count, classes, image size range, storage mode and size of a .beton file.

    Raises FileNotFoundError when it is missing and ValueError naming it when it is not a
    readable .beton with an RGBImageField and an IntField (a truncated file, for one), or
    when a label lies outside [0, num_classes) (see _checked_num_classes).
    """
    from ffcv.fields import IntField, RGBImageField

    path = Path(path)
    reader = read_beton(path)
    meta = reader.metadata
    images = meta[_field(reader, RGBImageField, path)]
    labels = np.asarray(meta[_field(reader, IntField, path)])
    if len(images) and int(images["data_ptr"].max()) >= int(reader.header["alloc_table_ptr"]):
        raise ValueError(f"{path}: corrupted .beton file (image data past the allocation table)")
    empty = len(labels) == 0
    num_classes, record = _checked_num_classes(path, labels)

    def span(key: str) -> tuple[int, int]:
        return (0, 0) if empty else (int(images[key].min()), int(images[key].max()))

    (h0, h1), (w0, w1) = span("height"), span("width")
    return BetonInfo(
        path=path,
        num_samples=int(reader.num_samples),
        num_classes=num_classes,
        distinct_labels=len(np.unique(labels)),
        min_height=h0,
        max_height=h1,
        min_width=w0,
        max_width=w1,
        mode="none" if empty else _storage_mode(images["mode"]),
        file_bytes=path.stat().st_size,
        classes_file=record,
    )


__all__: Sequence[str] = [
    "BetonInfo",
    "beton_info",
    "classes_file",
    "convert",
    "detect_source",
    "read_beton",
    "split_indices",
]
