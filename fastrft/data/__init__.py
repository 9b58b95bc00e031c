"""Data: sources, converters to FFCV .beton files, the FFCV and in-memory loaders, and
augmentation on the device."""

from .augment import Augment
from .loaders import Loaders, build_loaders
from .memory import InMemoryLoader
from .sources import Dataset, Split, load_dataset

__all__ = [
    "Augment",
    "Dataset",
    "InMemoryLoader",
    "Loaders",
    "Split",
    "build_loaders",
    "load_dataset",
]
