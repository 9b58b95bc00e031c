"""The paper's optimiser: AdamW over four parameter groups, cosine learning rate with warm-up.

Backbone and head get their own learning rate and weight decay (a fresh head on a pretrained
backbone often wants a larger learning rate); biases, norm parameters and what a timm
backbone lists in ``no_weight_decay()`` (position embeddings, class tokens, relative position
tables) get no decay (``fastrft.models.split_parameters``). Betas (0.9, 0.95) as in the
authors' code.

Gradient accumulation: an epoch's micro-batches fall into groups of ``accumulate``, the last
one short where they do not divide evenly; every group, short or not, makes one optimizer
step, on its last micro-batch (``updates_per_epoch``, ``group_size``, ``ends_group``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from fastrft.models import split_parameters

if TYPE_CHECKING:
    from fastrft.config import OptimConfig


def build_optimizer(
    model: nn.Module,
    *,
    lr: float = 1e-4,
    head_lr: float | None = None,
    weight_decay: float = 0.05,
    head_weight_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.95),
    capturable: bool = False,
    fused: bool | None = None,
) -> AdamW:
    """AdamW with one group per non-empty part of ``split_parameters(model)``, each carrying
    its "name" (backbone_decay, backbone_no_decay, head_decay, head_no_decay).

    ``head_lr`` and ``head_weight_decay`` default to the backbone's. ``capturable=True`` is for
    steps inside CUDA graphs: it needs CUDA parameters, and the learning rates become CUDA
    tensors that schedulers update in place, so graph replays follow the schedule. ``fused``
    goes to AdamW (None: torch's default).
    """
    head_lr = lr if head_lr is None else head_lr
    head_weight_decay = weight_decay if head_weight_decay is None else head_weight_decay
    for arg, value in [
        ("lr", lr),
        ("head_lr", head_lr),
        ("weight_decay", weight_decay),
        ("head_weight_decay", head_weight_decay),
    ]:
        if value < 0:
            raise ValueError(f"{arg} must be >= 0, got {value}")
    settings = {
        "backbone_decay": (lr, weight_decay),
        "backbone_no_decay": (lr, 0.0),
        "head_decay": (head_lr, head_weight_decay),
        "head_no_decay": (head_lr, 0.0),
    }
    groups = {name: params for name, params in split_parameters(model).items() if params}
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    as_lr = _lr_on_device(groups, capturable)
    param_groups = [
        {
            "name": name,
            "params": ps,
            "lr": as_lr(settings[name][0]),
            "weight_decay": settings[name][1],
        }
        for name, ps in groups.items()
    ]
    return AdamW(
        param_groups,
        lr=as_lr(lr),
        betas=betas,
        weight_decay=weight_decay,
        capturable=capturable,
        fused=fused,
    )


def _lr_on_device(
    groups: dict[str, list[nn.Parameter]], capturable: bool
) -> Callable[[float], float | Tensor]:
    """How a learning rate is stored: a float, or for capturable optimisers a tensor on the
    parameters' CUDA device (a float would be frozen into a captured graph)."""
    if not capturable:
        return float
    devices = {p.device for params in groups.values() for p in params}
    if any(d.type != "cuda" for d in devices):
        found = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(
            f"capturable=True is for CUDA graphs and needs CUDA parameters, found {found}: "
            "move the model to the GPU first, or pass capturable=False"
        )
    device = next(iter(devices))
    return lambda value: torch.tensor(float(value), device=device)


def run_optimizer(
    model: nn.Module,
    cfg: OptimConfig,
    *,
    epochs: int,
    micro_batches: int,
    capturable: bool = False,
) -> tuple[AdamW, LambdaLR]:
    """A run's optimizer (``build_optimizer`` with ``cfg``'s settings) and its learning-rate
    plan: the cosine with warm-up laid out over every update of ``epochs`` epochs of
    ``micro_batches`` micro-batches each, in groups of ``cfg.accumulate``."""
    optimizer = build_optimizer(
        model,
        lr=cfg.lr,
        head_lr=cfg.head_lr,
        weight_decay=cfg.weight_decay,
        head_weight_decay=cfg.head_weight_decay,
        betas=cfg.betas,
        capturable=capturable,
    )
    per_epoch = updates_per_epoch(micro_batches, cfg.accumulate)
    updates = epochs * per_epoch
    schedule = cosine_with_warmup(
        optimizer,
        total_steps=updates,
        warmup_steps=min(updates, round(cfg.warmup_epochs * per_epoch)),
        min_lr_ratio=cfg.min_lr_ratio,
    )
    return optimizer, schedule


def updates_per_epoch(micro_batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of ``micro_batches``: one per group of ``accumulate``,
    the short last group included."""
    return -(-micro_batches // accumulate)


def group_size(step: int, micro_batches: int, accumulate: int) -> int:
    """Micro-batches in the accumulation group that micro-batch ``step`` (from 0) belongs
    to: ``accumulate``, or fewer in an epoch's short last group."""
    return min(accumulate, micro_batches - step // accumulate * accumulate)


def ends_group(step: int, micro_batches: int, accumulate: int) -> bool:
    """Whether micro-batch ``step`` (from 0) is the last of its accumulation group: the one
    that steps the optimizer."""
    return (step + 1) % accumulate == 0 or step + 1 == micro_batches


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Each group's lr, per optimizer step: linear from 0 to its base lr over
    ``warmup_steps``, then a half cosine down to ``min_lr_ratio`` times it at ``total_steps``,
    flat after. Step the scheduler once per optimizer step (after gradient accumulation)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    factor = partial(
        _cosine_factor,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        min_lr_ratio=min_lr_ratio,
    )
    return LambdaLR(optimizer, factor)


def _cosine_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The base lr's multiplier after ``step`` optimizer steps."""
    if step < warmup_steps:
        return step / warmup_steps
    if step >= total_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
