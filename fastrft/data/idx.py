"""The IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST: one array per file.

An IDX file is a 4-byte magic number, 0x00 0x00 <type code> <number of dimensions>, then one
big-endian uint32 size per dimension, then the values, big-endian, in C order. Images are
idx3 uint8 (N, H, W), labels idx1 uint8 (N,). Files may be gzipped (told by their first two
bytes, whatever their name).

A dataset is four such files in one folder:

    [PREFIX]train-images-idx3-ubyte[.gz]   [PREFIX]train-labels-idx1-ubyte[.gz]
    [PREFIX]t10k-images-idx3-ubyte[.gz]    [PREFIX]t10k-labels-idx1-ubyte[.gz]

t10k (or test, as EMNIST names it) is the val split. PREFIX is empty for MNIST, Fashion-MNIST
and KMNIST and e.g. ``emnist-balanced-`` for EMNIST; a folder must hold exactly one such set.
Images are read as stored (EMNIST's are transposed, and its letters are labelled from 1).
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_NAME = re.compile(
    r"(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<kind>images-idx3|labels-idx1)-ubyte(\.gz)?"
)
LOOKED_FOR = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each plain or .gz; a common prefix such as emnist-digits- and "
    "test for t10k accepted)"
)


def _contents(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: damaged or truncated gzip file ({err})") from err


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds, in native byte order; ValueError naming the file when it
    is not IDX (magic number), is shorter than its header says, or has bytes past its end."""
    raw = _contents(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _TYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic number {raw[:4].hex(' ') or 'absent'}, expected "
            "00 00 <type 08|09|0b|0c|0d|0e> <dimensions>)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header of {header})")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[raw[2]])
    size = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != size:
        what = "truncated IDX file" if len(raw) < size else "IDX file with trailing bytes"
        raise ValueError(
            f"{path}: {what} ({len(raw)} bytes, its header says {size}: {dtype} {shape})"
        )
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a writable copy: torch shares its memory


def find_idx_files(root: Path) -> dict[str, dict[str, Path]]:
    """{"train"|"val": {"images"|"labels": path}} of the one IDX set in ``root``; ValueError
    listing what was looked for when there is none, or naming the sets when there are several.
    A file present both plain and gzipped is read plain."""
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; expected one holding {LOOKED_FOR}")
    sets: dict[str, dict[tuple[str, str], Path]] = {}
    for path in sorted(root.iterdir(), key=lambda p: (p.suffix == ".gz", p.name)):  # plain first
        match = _NAME.fullmatch(path.name)
        if match and path.is_file():
            split = "train" if match["split"] == "train" else "val"
            sets.setdefault(match["prefix"], {}).setdefault((split, match["kind"][:6]), path)
    complete = {p: files for p, files in sets.items() if len(files) == 4}
    if len(complete) > 1:
        named = ", ".join(repr(p) for p in sorted(complete))
        raise ValueError(
            f"{root}: holds several IDX sets (prefixes {named}): point data.root at a folder "
            "with one set of four files"
        )
    if not complete:
        found = ", ".join(str(p) for files in sets.values() for p in files.values()) or "none"
        raise ValueError(f"{root}: no complete IDX set; looked for {LOOKED_FOR}; found: {found}")
    (files,) = complete.values()
    return {s: {k: files[s, k] for k in ("images", "labels")} for s in ("train", "val")}


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 1) and their labels (as stored: any integer type)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{images_path}: images must be uint8 (N, H, W) (idx3 ubyte), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{labels_path}: labels must be 1-D integers (idx1), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}"
        )
    return images[..., None], labels
