"""The whole training step in one CUDA graph (``speed.graph_step``): what the graph may hold,
capturing it without moving the run, and an optimizer state loaded the way the step reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from fastrft.config import ConfigError

from .graphs import CapturedCall, CaptureFailed


def check_graph_step(distributed: bool, accumulate: int, amp: torch.dtype | None) -> None:
    """A whole-step graph holds no host decisions: no DDP reducer, no accumulation, no fp16
    loss scaling (whose skipped steps are decided on the host)."""
    for refused, why in (
        (distributed, "it runs in one process (not under torchrun)"),
        (accumulate != 1, "it needs optim.accumulate=1"),
        (amp == torch.float16, "fp16 loss scaling cannot be captured; use speed.amp=bf16"),
    ):
        if refused:
            raise ConfigError(f"speed.graph_step: {why}; or set speed.graph_step=false")


def refused(e: CaptureFailed) -> ConfigError:
    """The run's error for a capture torch refuses. It stops the run: after one, torch's
    generator and memory pool may be left mid-capture, so going on eagerly in the same
    process is not safe; the run resumes from its last checkpoint without the lever."""
    return ConfigError(
        f"speed.graph_step: torch could not capture the training step ({e}); run "
        "again with speed.graph_step=false (the run resumes from its last checkpoint)"
    )


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[Tensor]:
    """Every tensor a step changes: weights, buffers (BatchNorm statistics), optimizer state."""
    yield from model.parameters()
    yield from model.buffers()
    for state in optimizer.state.values():
        yield from (v for v in state.values() if torch.is_tensor(v))


def capture_step(
    step: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> CapturedCall:
    """``step`` captured whole, the model and optimizer left as they were before capture.
    The optimizer must be capturable (AdamW(capturable=True), learning rates as tensors if a
    schedule changes them)."""
    return CapturedCall(step, inputs, preserve=lambda: training_state(model, optimizer))


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    capturable: bool,
    device: torch.device,
) -> None:
    """The optimizer's saved state, the way the step steps (``capturable``: a captured
    step): a checkpoint (loaded on the CPU) keeps its groups' settings, so capturability and
    learning rates on the device, which a captured step reads and the schedule fills in
    place, are set back."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["capturable"] = capturable
        for key in ("lr", "initial_lr"):
            if key not in group:
                continue
            if capturable:
                group[key] = torch.as_tensor(group[key], dtype=torch.float32, device=device)
            elif torch.is_tensor(group[key]):
                group[key] = group[key].item()
    # AdamW keeps the step count beside the parameters when capturable, else on the host
    step_device = device if capturable else torch.device("cpu")
    for param_state in optimizer.state.values():
        if torch.is_tensor(param_state.get("step")):
            param_state["step"] = param_state["step"].to(step_device, torch.float32)


def load_schedule_state(
    schedule: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]
) -> None:
    """The schedule's saved state with plain float rates. A captured run's schedule saves its
    base rates as tensors; loaded as they are, its next step would write tensor learning rates
    into an optimizer that is not capturable, which then leaves AdamW's foreach path. A
    captured step needs no tensors here: the schedule fills the groups' tensors in place."""
    schedule.load_state_dict(state)
    schedule.base_lrs = [float(lr) for lr in schedule.base_lrs]
    schedule._last_lr = [float(lr) for lr in schedule.get_last_lr()]
