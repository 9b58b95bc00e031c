"""Crafting the training batch's adversarial examples: the configured attack, with the
objective's loss, under the run's autocast; on CUDA, optionally captured whole in one graph
(fastrft.engine.graphs).

The attack runs on the bare model (not a DDP wrapper, whose reducer expects every forward
under grad to be followed by a weight backward).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor, nn

from fastrft.attack_registry import ATTACKS
from fastrft.config import AttackConfig
from fastrft.kernels import per_sample
from fastrft.objectives import Objective

from .graphs import CapturedCall
from .speed import Speed


def attack_function(cfg: AttackConfig, objective: Objective) -> Callable[..., Tensor]:
    """fn(model, x, target, eps) -> x_adv for the configured attack and the objective's loss.

    validate=False: the engine's inputs are well formed, and value checks would sync.
    apgd returns the iterate ``cfg.best`` picks (training: the highest-loss one)."""
    spec = ATTACKS[cfg.name]
    return functools.partial(
        spec.run(),
        loss=objective.attack_loss,
        random_start=cfg.random_start,
        validate=False,
        **spec.settings(norm=cfg.norm, steps=cfg.steps, alpha=cfg.alpha, best=cfg.best),
    )


class Attacker:
    """x_adv = attacker(x, target, eps), eps a float for the whole batch or a per-sample
    budget tensor."""

    def __init__(self, model: nn.Module, cfg: AttackConfig, objective: Objective, speed: Speed):
        self.model, self.speed = model, speed
        self.fn = attack_function(cfg, objective)
        self._graph: CapturedCall | None = None

    def __call__(self, x: Tensor, target: Tensor, eps: float | Tensor) -> Tensor:
        """x_adv for the batch; with CUDA graphs, a static tensor valid until the next call.
        eps travels as a device tensor, so a new budget needs no new capture."""
        budget = per_sample(eps, x.shape[0], x.device)
        if not self.speed.cuda_graphs:
            return self.run(x, target, budget)
        if self._graph is None or not self._graph.fits(x, target, budget):
            self._graph = CapturedCall(self.run, (x, target, budget))
        return self._graph(x, target, budget)

    def run(self, x: Tensor, target: Tensor, eps: Tensor) -> Tensor:
        """The attack, eagerly, with a per-sample budget tensor (what a graph captures)."""
        with self.speed.autocast():
            return self.fn(self.model, x, target, eps)
