"""Data: sources, converters to FFCV .beton files, the FFCV and in-memory loaders, and
augmentation on the device.

Exports load on first use (PEP 562), so `fastrft.data.layouts`, which the CLI reads to build
its help, does not pull in torch."""

from importlib import import_module

_EXPORTS = {
    "Augment": "augment",
    "Dataset": "sources",
    "InMemoryLoader": "memory",
    "Loaders": "loaders",
    "Split": "sources",
    "build_eval_loader": "loaders",
    "build_loaders": "loaders",
    "load_dataset": "sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
