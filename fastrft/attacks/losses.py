"""Per-sample attack losses, each computed from float32 logits; the attack ascends them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio (Croce and Hein, 2020): shift and scale invariant.

    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12), with z_pi sorted descending.
    """
    if logits.shape[1] < 3:
        raise ValueError(
            f"loss='dlr' needs at least 3 classes, the model gives {logits.shape[1]}; use loss='ce'"
        )
    top3 = logits.topk(3, dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    y_is_top = logits.argmax(1) == y
    best_other = torch.where(y_is_top, top3[:, 1], top3[:, 0])
    return -(z_y - best_other) / (top3[:, 0] - top3[:, 2] + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "dlr": dlr}


def attack_loss(name: str | LossFn, targeted: bool) -> LossFn:
    """The per-sample objective an attack maximises: a name from LOSSES or a function
    (logits, y) -> per-sample losses. Targeted attacks descend the loss
    towards the labels they are given, so they maximise its negation."""
    fn = name if callable(name) else LOSSES[name]
    if not targeted:
        return fn
    return lambda logits, y: -fn(logits, y)
