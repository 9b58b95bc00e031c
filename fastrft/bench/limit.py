"""The limit a robust training step cannot beat, measured for the same model and batch.

    T_train  one compiled forward + backward + optimizer step, under autocast, channels_last
    T_grad   one compiled forward + input-gradient backward, parameters frozen, eval mode
    T_fwd    one compiled forward, eval mode, no grad

floor = T_train + k_grad * T_grad + k_fwd * T_fwd, with (k_grad, k_fwd) the attack's own
count of passes (`passes`); "fraction of the limit" = floor / a rung's measured step time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fastrft.attack_registry import ATTACKS
from fastrft.attacks.core import attack_mode
from fastrft.config import AttackConfig
from fastrft.engine.speed import autocast
from fastrft.objectives import make_objective

from .ladder import Workload, fresh_model, measure, random_batch, release


def passes(attack: AttackConfig, objective: str) -> tuple[int, int]:
    """(input-gradient passes, forward-only passes) one attack makes on a batch.

    PGD-k: k gradients. FGSM: one. APGD-k: the start point's gradient, k - 1 more, and a
    last forward whose gradient is never used (fastrft.attacks.apgd). TRADES adds the clean
    forward whose prediction the attack moves away from."""
    grads, forwards = ATTACKS[attack.name].passes(attack.steps)
    return grads, forwards + (objective == "trades")


@dataclass(frozen=True)
class Limit:
    t_train_ms: float
    t_grad_ms: float
    t_fwd_ms: float
    k_grad: int
    k_fwd: int
    compiled: bool

    @property
    def floor_ms(self) -> float:
        return self.t_train_ms + self.k_grad * self.t_grad_ms + self.k_fwd * self.t_fwd_ms

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "floor_ms": self.floor_ms}


def measure_limit(w: Workload, *, compile: bool, **counts: Any) -> Limit:
    """T_train, T_grad and T_fwd for the workload (compiled unless ``compile`` is False),
    each timed by the ladder's ``measure`` with ``counts``."""
    model = fresh_model(w).to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    x, y = random_batch(w, channels_last=True)
    objective = make_objective(w.objective)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = functools.partial(autocast, w.device, w.amp_dtype)

    def train() -> None:
        with amp():
            loss, _ = objective.loss(net, x, y, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def grad() -> None:
        with attack_mode(net), amp():
            x_req = x.detach().requires_grad_()
            loss = F.cross_entropy(net(x_req).float(), y, reduction="sum")
            torch.autograd.grad(loss, [x_req])

    @torch.no_grad()
    def forward() -> None:
        with attack_mode(net), amp():
            net(x)

    def ms(fn: Callable[[], None]) -> float:
        return measure(fn, w, **counts).timing.median_ms

    try:
        net.train()
        t_train = ms(train)
        t_grad, t_fwd = ms(grad), ms(forward)
    finally:
        model = net = optimizer = None
        release(w.device)
    k_grad, k_fwd = passes(w.attack, w.objective)
    return Limit(t_train, t_grad, t_fwd, k_grad, k_fwd, compile)
