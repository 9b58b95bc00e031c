"""Foreign layouts of a state dict: how another library names a model's tensors, mapped onto
timm's names for the same architecture.

A layout maps ``theirs`` (a file's tensors, in the file's order) onto ``ours`` (the timm
model's state dict) and returns ``theirs`` under ``ours``'s names, or raises a ValueError
naming the first tensor that does not fit. Adding a layout is one entry in ``LAYOUTS``.
Torch-free at import: the command lists the layouts in its help.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Layout:
    map: Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], dict[str, Tensor]]
    """``map(theirs, ours)``: ``theirs`` under ``ours``'s names."""
    about: str
    """Whose layout it is, for the help."""


def by_order(theirs: Mapping[str, Tensor], ours: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``theirs`` renamed to ``ours``'s names pair by pair, in order: for a library that
    defines the same modules in the same order under other names. Each pair must agree in
    shape and in its name's last part (weight, bias, running_mean, ...), and neither side may
    have a tensor left over, so a file of another architecture or a reordered one is refused
    at its first misfit instead of loading shuffled."""
    pairs = list(zip(theirs.items(), ours.items(), strict=False))
    for i, ((name, tensor), (own, target)) in enumerate(pairs):
        if _shape(tensor) != _shape(target) or _leaf(name) != _leaf(own):
            raise ValueError(
                f"the file's tensor {i}, {name} {_shape(tensor)}, does not fit the model's "
                f"tensor {i}, {own} {_shape(target)}"
            )
    if len(theirs) != len(ours):
        i = len(pairs)
        side, (name, tensor) = (
            ("the file's", list(theirs.items())[i])
            if len(theirs) > len(ours)
            else ("the model's", list(ours.items())[i])
        )
        raise ValueError(
            f"{side} tensor {i}, {name} {_shape(tensor)}, has no counterpart: the file has "
            f"{len(theirs)} tensors, the model {len(ours)}"
        )
    return {own: tensor for own, tensor in zip(ours, theirs.values(), strict=True)}


def _shape(tensor: Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _leaf(name: str) -> str:
    return name.rpartition(".")[2]


LAYOUTS: dict[str, Layout] = {
    "efficientnet_pytorch": Layout(
        by_order,
        "lukemelas' EfficientNet-PyTorch (_conv_stem, _blocks.N._bn1, _fc), the same tensors "
        "in the same order as timm's tf_efficientnet* models",
    ),
}
