"""Data: sources as uint8 tensors, the in-memory loader, augmentation on the device."""

from .augment import Augment
from .memory import InMemoryLoader
from .sources import Dataset, Split, load_dataset

__all__ = ["Augment", "Dataset", "InMemoryLoader", "Split", "load_dataset"]
