"""Convert an image dataset into two FFCV .beton files (train and val), and describe one.

    convert("data/pets", "data/pets")   ->  data/pets.train.beton, data/pets.val.beton
    beton_info("data/pets.val.beton")   ->  BetonInfo(num_samples=..., num_classes=..., ...)

Sources are read by fastrft.data.readers (``source="auto"`` picks imagefolder, cifar, idx or
npz from the path; the named layouts are never picked by "auto"; grey images are written as
RGB); one without a split of its own
is split by val_fraction.

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
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastrft.atomic import atomic_path
from fastrft.data.readers import (
    ArraySplit,
    SourceName,
    Split,
    largest_label,
    load_source,
    read_rgb,
    split_indices,
)
from fastrft.errors import MissingDependency

INSTALL_FFCV = (
    "install its system libraries (apt-get install libopencv-dev libturbojpeg0-dev "
    'pkg-config), then FFCV itself (pip install "fastrft[ffcv]")'
)

# --------------------------------------------------------------------------- checks


def require_ffcv() -> None:
    """Raise MissingDependency, saying how to install FFCV, when ``import ffcv`` fails: called
    before any work, so a missing FFCV is not found after minutes of reading images."""
    try:
        import ffcv  # noqa: F401
    except ImportError as err:  # not installed, or its OpenCV / libturbojpeg missing
        reason = " ".join(str(err).split())
        raise MissingDependency(f"FFCV cannot be imported ({reason}): {INSTALL_FFCV}") from err


def _drop_unreadable(split: Split, on_bad_image: str, progress: bool, name: str) -> Split:
    """Decode every file once; raise on the first bad one, or drop bad ones with a warning."""
    if isinstance(split, ArraySplit):
        return split
    keep, bad = [], []
    with _progress_bar(f"checking {name}", len(split), progress) as advance:
        for i, path in enumerate(split.paths):
            try:
                read_rgb(path)
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


def _write_beton(path: Path, split: Split, opts: dict[str, Any], progress: bool) -> None:
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

    src: a .npz file, a CIFAR python-batch folder, a folder of IDX files or an ImageFolder
    root (see the module docstring); ``source="auto"`` tells them apart. Or the root of a
    dataset named in fastrft.datasets.DATASETS or IDX_DATASETS, with ``source=`` its name.
    out: a path stem (a trailing ".beton" is dropped). The source's own train/val split is
    kept, in its order; without one, a seeded ``val_fraction`` split (the same draw as
    fastrft.data.sources), each part in source order.
    mode: "raw" stores exact pixels, "jpg" JPEG at ``jpeg_quality``. max_side: shrink images
    whose longer side exceeds it, keeping aspect. on_bad_image: "error" raises a ValueError
    naming the first unreadable image; "skip" drops them and warns with the count.
    Also writes ``classes_file(...)`` (STEM.classes.json: num_classes, class names or null).
    Returns {"train": path, "val": path}.
    """
    _check_options(mode, jpeg_quality, max_side, workers, on_bad_image)
    require_ffcv()
    src = Path(src)
    train, val, classes = load_source(src, source)
    num_classes = len(classes) if classes else largest_label(train, val) + 1
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
    opts = {"mode": mode, "jpeg_quality": jpeg_quality, "workers": workers}
    # each file renamed into place only once all three are written: no half a dataset
    with ExitStack() as stack:
        temp = {name: stack.enter_context(atomic_path(p)) for name, p in outputs.items()}
        for name, split in splits.items():
            _write_beton(temp[name], split, {**opts, "name": final[name].name}, progress)
        record = {"num_classes": num_classes, "classes": classes}
        temp["classes"].write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
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
    require_ffcv()
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


def field_column(reader: Any, kind: type, path: Path) -> str:
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
    require_ffcv()
    from ffcv.fields import IntField, RGBImageField

    path = Path(path)
    reader = read_beton(path)
    meta = reader.metadata
    images = meta[field_column(reader, RGBImageField, path)]
    labels = np.asarray(meta[field_column(reader, IntField, path)])
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
    "field_column",
    "read_beton",
    "require_ffcv",
]
