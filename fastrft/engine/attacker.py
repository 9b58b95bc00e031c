"""Crafting the training batch's adversarial examples: the configured attack, with the
objective's loss, under the run's autocast; on CUDA, optionally captured whole in a graph.

The attack runs on the bare model (not a DDP wrapper, whose reducer expects every forward
under grad to be followed by a weight backward).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from fastrft.attacks import apgd, fgsm, pgd
from fastrft.config import AttackConfig
from fastrft.objectives import Objective

from .speed import Speed


def attack_function(cfg: AttackConfig, objective: Objective) -> Callable[..., Tensor]:
    """fn(model, x, target, eps) -> x_adv for the configured attack and the objective's loss.

    validate=False: the engine's inputs are well formed, and value checks would sync."""
    common = {"loss": objective.attack_loss, "validate": False}
    if cfg.name == "fgsm":
        return functools.partial(fgsm, alpha=cfg.alpha, **common)
    if cfg.name == "pgd":
        return functools.partial(pgd, alpha=cfg.alpha, steps=cfg.steps, norm=cfg.norm, **common)
    return functools.partial(apgd, steps=cfg.steps, norm=cfg.norm, **common)


class Attacker:
    """x_adv = attacker(x, target, eps), eps a float for the whole batch."""

    def __init__(self, model: nn.Module, cfg: AttackConfig, objective: Objective, speed: Speed):
        self.model, self.speed = model, speed
        self.fn = attack_function(cfg, objective)
        self._graph: _CapturedAttack | None = None

    def __call__(self, x: Tensor, target: Tensor, eps: float) -> Tensor:
        if self.speed.cuda_graphs:
            if self._graph is None or not self._graph.fits(x, target):
                self._graph = _CapturedAttack(self._run, x, target)
            return self._graph(x, target, eps)
        return self._run(x, target, torch.full((x.shape[0],), eps, device=x.device))

    def _run(self, x: Tensor, target: Tensor, eps: Tensor) -> Tensor:
        with self.speed.autocast():
            return self.fn(self.model, x, target, eps)


class _CapturedAttack:
    """The whole k-step attack as one CUDA graph replay, on static input buffers.

    Warm-up runs on a side stream first (cuDNN/cuBLAS handles, Triton JIT, the compiled
    backward), then capture; eps is a device tensor filled before each replay, so a new
    budget needs no new capture. The returned tensor is the graph's static output: use it
    before the next call.
    """

    WARMUP = 3

    def __init__(
        self, run: Callable[[Tensor, Tensor, Tensor], Tensor], x: Tensor, target: Tensor
    ) -> None:
        self.x, self.target = x.clone(), target.clone()
        self.eps = torch.zeros(x.shape[0], device=x.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                run(self.x, self.target, self.eps)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = run(self.x, self.target, self.eps)

    def fits(self, x: Tensor, target: Tensor) -> bool:
        return (
            x.shape == self.x.shape
            and x.stride() == self.x.stride()
            and target.shape == self.target.shape
        )

    def __call__(self, x: Tensor, target: Tensor, eps: float) -> Tensor:
        self.x.copy_(x)
        self.target.copy_(target)
        self.eps.fill_(eps)
        self.graph.replay()
        return self.out
