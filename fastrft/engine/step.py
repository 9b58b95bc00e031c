"""One robust training step as a function of device tensors alone, so that it can replay
from one CUDA graph (``speed.graph_step``): craft x_adv, the objective's loss, backward,
optimizer step. The training engine and the bench's top rung run this same step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from fastrft.objectives import Objective

from .graphs import CapturedCall

AttackFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""attack(x, target, eps) -> x_adv, eps a per-sample budget tensor."""
StepFn = Callable[..., tuple[Tensor, Tensor]]
"""step(x, y[, eps]) -> (loss, logits), both detached; without eps no attack runs."""


def robust_step(
    net: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    autocast: Callable[[], contextlib.AbstractContextManager],
    attack: AttackFn,
) -> StepFn:
    """The step on ``net`` (in train mode). Gradients are set to None at its end rather than
    zeroed at its start: captured, the backward then writes fresh gradient buffers of the
    graph's own on each replay instead of accumulating into the last ones."""

    def step(x: Tensor, y: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_adv = None if eps is None else attack(x, objective.attack_target(net, x, y), eps)
        with autocast():
            loss, logits = objective.loss(net, x, y, x_adv)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach(), logits.detach()

    return step


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[Tensor]:
    """Every tensor a step changes: weights, buffers (BatchNorm statistics), optimizer state."""
    yield from model.parameters()
    yield from model.buffers()
    for state in optimizer.state.values():
        yield from (v for v in state.values() if torch.is_tensor(v))


def capture_step(
    step: StepFn, inputs: tuple[Tensor, ...], model: nn.Module, optimizer: torch.optim.Optimizer
) -> CapturedCall:
    """``step`` captured whole, the model and optimizer left as they were before capture.
    The optimizer must be capturable (AdamW(capturable=True), learning rates as tensors if a
    schedule changes them)."""
    return CapturedCall(step, inputs, preserve=lambda: training_state(model, optimizer))
