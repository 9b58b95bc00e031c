"""The robust training step, built in one place: the trainer runs it (eagerly, or captured
whole for ``speed.graph_step``) and every rung of the bench's ladder times it, each with its
own levers.

``TrainStep(...)(x, y, eps, step, steps)`` is micro-batch ``step`` (from 0) of an epoch of
``steps``:

- the attack crafts x_adv on ``net`` (none where the objective trains on clean images or
  ``eps <= 0``);
- the objective's loss under the speed's autocast, its forward through ``train_net`` (the
  DDP wrapper, which skips the gradient all-reduce of a group's non-final micro-batches);
- backward of the loss divided by the size of its accumulation group
  (``fastrft.optim.group_size``), through the fp16 loss scaler: a group's gradient is the
  mean over its images, a short last group's too;
- on a group's last micro-batch (``fastrft.optim.ends_group``): the scaler's optimizer step
  and update, gradients set to None, then the learning-rate schedule's step.

``graphed``: all of it but the schedule's step replays from one CUDA graph (``TrainStep.run``
captured, fastrft.engine.capture), captured anew when the step changes kind (eps = 0 or
attacked) or shape; the schedule then fills the learning-rate tensors the graph reads, in
place. Gradients are set to None at the step's end rather than zeroed at its start: captured,
the backward then writes fresh gradient buffers of the graph's own on each replay instead of
accumulating into the last ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fastrft.kernels import per_sample
from fastrft.objectives import Objective
from fastrft.optim import ends_group, group_size

from .attacker import Attacker
from .capture import capture_step, load_optimizer_state, load_schedule_state
from .graphs import CapturedCall
from .speed import Speed

AttackFn = Callable[[Tensor, Tensor, Any], Tensor]
"""attack(x, target, eps) -> x_adv; eps a float, or when graphed a per-sample budget tensor
(a new budget then needs no new capture)."""


def grad_scaler(speed: Speed) -> torch.amp.GradScaler:
    """The loss scaler fp16 autocast needs; disabled otherwise (it then passes the loss and
    the optimizer step through unchanged). A whole-step graph cannot hold it: the trainer
    refuses speed.graph_step with fp16, the bench's whole-step rung goes without it."""
    on = speed.amp == torch.float16 and not speed.graph_step
    return torch.amp.GradScaler(speed.device.type, enabled=on)


class TrainStep:
    """``net``: the model the attack runs on (compiled or not, never a DDP wrapper, whose
    reducer expects a weight backward after every forward under grad); ``train_net``: what
    the loss's forward goes through, ``net`` or its DDP wrapper. Without a ``scaler`` the
    step scales nothing; without an ``lr_schedule`` the learning rate stays."""

    @classmethod
    def with_speed(
        cls,
        speed: Speed,
        net: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        attack: Attacker | AttackFn,
        **settings: Any,
    ) -> TrainStep:
        """The step as ``speed``'s levers run it: its autocast, its loss scaling
        (``grad_scaler``), and captured whole where ``speed.graph_step``, the engine's
        Attacker then running eagerly inside the step's graph (captured alone, where
        ``speed.cuda_graphs``, otherwise). ``settings``: lr_schedule, train_net, accumulate."""
        if isinstance(attack, Attacker) and speed.graph_step:
            attack = attack.run
        return cls(
            net,
            objective,
            optimizer,
            attack,
            autocast=speed.autocast,
            scaler=grad_scaler(speed),
            graphed=speed.graph_step,
            **settings,
        )

    def __init__(
        self,
        net: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        attack: AttackFn,
        *,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        scaler: torch.amp.GradScaler | None = None,
        lr_schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
        train_net: nn.Module | None = None,
        accumulate: int = 1,
        graphed: bool = False,
    ) -> None:
        self.net, self.objective, self.optimizer, self.attack = net, objective, optimizer, attack
        self.autocast, self.lr_schedule, self.accumulate = autocast, lr_schedule, accumulate
        self.scaler = scaler or torch.amp.GradScaler(enabled=False)
        self.train_net = net if train_net is None else train_net
        self.graphed = graphed
        self._graph: CapturedCall | None = None  # the captured step, when graphed

    def __call__(
        self, x: Tensor, y: Tensor, eps: float, step: int = 0, steps: int = 1
    ) -> tuple[Tensor, Tensor]:
        """Micro-batch ``step`` of ``steps`` at the budget ``eps``: (loss, logits), detached;
        graphed, the graph's static tensors (use them before the next step)."""
        update = ends_group(step, steps, self.accumulate)
        attacked = self.objective.attacks and eps > 0
        if self.graphed:  # one micro-batch per group (fastrft.engine.capture.check_graph_step)
            budget = per_sample(eps, len(y), x.device)
            out = self._replay((x, y, budget) if attacked else (x, y))
        else:
            group = group_size(step, steps, self.accumulate)
            out = self.run(x, y, eps if attacked else None, group, update)
        if update and self.lr_schedule is not None:
            self.lr_schedule.step()
        return out

    def run(
        self, x: Tensor, y: Tensor, eps: Any = None, group: int = 1, update: bool = True
    ) -> tuple[Tensor, Tensor]:
        """The step but the schedule's, eagerly (what a graph captures): without ``eps`` no
        attack runs; the loss's gradient is divided by ``group``, the group's micro-batch
        count; ``update``: the group's last micro-batch, whose gradients are all-reduced and
        which steps the optimizer."""
        x_adv = None if eps is None else self.attack(x, self._attack_target(x, y), eps)
        no_sync = isinstance(self.train_net, DistributedDataParallel) and not update
        with self.train_net.no_sync() if no_sync else contextlib.nullcontext():
            with self.autocast():
                loss, logits = self.objective.loss(self.train_net, x, y, x_adv)
            self.scaler.scale(loss / group).backward()
        if update:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), logits.detach()

    def _attack_target(self, x: Tensor, y: Tensor) -> Tensor:
        """The objective's target for the attack, its forward (TRADES' clean prediction) in
        the step's precision like every other forward of the step."""
        with self.autocast():
            return self.objective.attack_target(self.net, x, y)

    def _replay(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The step replayed from its graph: one graph at a time, so two graphs' memory is
        never held at once. A capture torch refuses raises CaptureFailed."""
        if self._graph is None or not self._graph.fits(*inputs):
            self._graph = None  # the old graph's memory goes back before the new capture
            self._graph = capture_step(self.run, inputs, self.net, self.optimizer)
        return self._graph(*inputs)

    def load_optimizer(
        self, state: dict[str, Any], schedule_state: dict[str, Any] | None = None
    ) -> None:
        """The optimizer's saved state, and its learning-rate schedule's, set up the way this
        step steps (captured or not)."""
        device = self.optimizer.param_groups[0]["params"][0].device
        load_optimizer_state(self.optimizer, state, capturable=self.graphed, device=device)
        if schedule_state is not None and self.lr_schedule is not None:
            load_schedule_state(self.lr_schedule, schedule_state)
