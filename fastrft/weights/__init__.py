"""`fastrft weights`: real pretrained weights, imported offline from a pip package or a local
file in another library's layout into a verified fastrft weights file in the cache.

layouts (foreign key layouts mapped onto timm's), registry (the packaged checkpoints and the
photos that check them; torch-free), photos (the photo check), importer (map, write, verify),
cli. Exports load on first use (PEP 562), so the command's help does not pull in torch."""

from importlib import import_module

_EXPORTS = {
    "CHECKPOINTS": "registry",
    "LAYOUTS": "layouts",
    "cached_file": "registry",
    "import_file": "importer",
    "import_local": "importer",
    "import_packaged": "importer",
    "imported_weights": "importer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
