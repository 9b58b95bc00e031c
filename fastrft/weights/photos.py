"""The photo check: an ImageNet model, through fastrft's wrapper, must name the shipped photos'
classes. A converted checkpoint whose tensors loaded under wrong names or in a wrong
preprocessing still loads without complaint; this is what tells it apart."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from fastrft.models import Normalized

from .registry import PHOTOS, Photo, photo_folder

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Answer:
    """The model's top-1 class for a photo."""

    photo: Photo
    index: int
    probability: float

    @property
    def right(self) -> bool:
        return self.index in self.photo.classes

    @property
    def label(self) -> str:
        return class_name(self.index)


def class_name(index: int) -> str:
    """ImageNet-1k's name of class ``index`` (timm's table)."""
    return _imagenet().index_to_description(index)


@functools.cache
def _imagenet() -> ImageNetInfo:
    return ImageNetInfo()


@torch.no_grad()
def classify(model: Normalized, photos: Sequence[Photo] = PHOTOS) -> list[Answer]:
    """Each photo's top-1 class, preprocessed as timm evaluates the backbone on ImageNet
    (resize, centre crop, interpolation), in pixels in [0, 1]: the wrapper normalises."""
    config = resolve_model_data_config(model.backbone)
    transform = create_transform(**{**config, "mean": (0.0,) * 3, "std": (1.0,) * 3})
    folder = photo_folder()
    x = torch.stack([transform(Image.open(folder / photo.file).convert("RGB")) for photo in photos])
    was_training = model.training
    probabilities = model.eval()(x).softmax(dim=-1)
    model.train(was_training)
    best, index = probabilities.max(dim=-1)
    top = zip(photos, index.tolist(), best.tolist(), strict=True)
    return [Answer(photo, i, p) for photo, i, p in top]


def check_answers(answers: Sequence[Answer], what: str, hint: str) -> None:
    """ValueError naming each photo ``what`` (the model, the file) got wrong and as what, and
    ``hint``: what to do about it."""
    wrong = [a for a in answers if not a.right]
    if wrong:
        said = "; ".join(
            f"{a.photo.file} came out as {a.label!r} ({a.probability:.1%}), expected "
            + " or ".join(repr(class_name(c)) for c in a.photo.classes)
            for a in wrong
        )
        raise ValueError(f"{what} fails the photo check: {said}. {hint}")
