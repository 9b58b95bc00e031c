"""Training objectives: what the attack maximises, and the loss the optimizer descends.

    standard  cross-entropy on clean images; no attack is ever run
    madry     cross-entropy on the attack's examples (Madry et al., 2018): the paper's objective
    trades    CE on clean images + beta * KL(f(x) || f(x_adv)) (Zhang et al., 2019); the attack
              ascends that KL from the clean prediction

The engine crafts x_adv itself (so it can capture the attack in a CUDA graph) with the loss
and the per-sample targets an objective names, then asks the objective for the training loss.
At eps = 0 every objective is plain fine-tuning and no attack runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastrft.attacks.losses import LossFn

OBJECTIVES: dict[str, Callable[..., Objective]] = {}


def register_objective(name: str) -> Callable:
    def add(cls: Callable[..., Objective]) -> Callable[..., Objective]:
        OBJECTIVES[name] = cls
        return cls

    return add


class Objective:
    """Base: plain cross-entropy, no attack."""

    attacks = False
    """Whether the objective trains on adversarial examples at all."""
    attack_loss: str | LossFn = "ce"
    """What the attack maximises: a loss name of fastrft.attacks or a function."""

    def attack_target(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample targets handed to the attack's loss (class labels by default)."""
        return y

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """(mean training loss, logits whose accuracy the run reports), model in train mode.
        ``x_adv`` is None when no attack ran (eps = 0)."""
        logits = model(x)
        return F.cross_entropy(logits.float(), y), logits


@register_objective("standard")
class Standard(Objective):
    pass


@register_objective("madry")
class Madry(Objective):
    attacks = True

    def loss(self, model, x, y, x_adv):
        logits = model(x if x_adv is None else x_adv)
        return F.cross_entropy(logits.float(), y), logits


def kl_to_clean(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """Per-sample KL(p_clean || softmax(logits_adv)), the quantity TRADES' attack ascends."""
    log_p_adv = F.log_softmax(logits_adv.float(), dim=1)
    return (p_clean * (torch.log(p_clean.clamp_min(1e-12)) - log_p_adv)).sum(1)


@register_objective("trades")
@dataclass
class Trades(Objective):
    beta: float = 6.0
    attacks = True
    attack_loss = staticmethod(kl_to_clean)

    @torch.no_grad()
    def attack_target(self, model, x, y):
        was_training = model.training
        model.eval()  # the clean prediction the attack moves away from, as the attack sees it
        try:
            return F.softmax(model(x).float(), dim=1)
        finally:
            model.train(was_training)

    def loss(self, model, x, y, x_adv):
        logits = model(x)
        ce = F.cross_entropy(logits.float(), y)
        if x_adv is None:
            return ce, logits
        p_clean = F.softmax(logits.float(), dim=1)
        return ce + self.beta * kl_to_clean(model(x_adv), p_clean).mean(), logits


def make_objective(name: str, beta: float = 6.0) -> Objective:
    """An objective by name; ``beta`` is TRADES' weight of the KL term."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name](beta=beta) if name == "trades" else OBJECTIVES[name]()
