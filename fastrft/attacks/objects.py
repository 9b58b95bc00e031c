"""Attack objects in the style of torchattacks: ``PGD(model, eps=8/255)(images, labels)``.

Each class takes the arguments of torchattacks' class of the same name (3.5.1), with its
defaults, and on them crafts the same attack, so a script written for torchattacks switches
by changing its import; the README keeps a table of what matches and what differs. Any
other keyword goes to the function (``model_mode``, ``backend``, ``targeted``, ...).
Model-mode handling lives in the functions, done once for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .apgd import apgd
from .pgd import fgsm, pgd


class Attack:
    """An attack bound to a model and its settings; call it on (images, labels)."""

    function: Callable[..., Tensor]

    def __init__(self, model: nn.Module, **settings: Any) -> None:
        self.model = model
        self.settings = settings

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        return type(self).function(self.model, images, labels, **self.settings)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        return self(images, labels)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


class FGSM(Attack):
    """torchattacks' FGSM: one sign step of eps from the images, no random start; eps 8/255."""

    function = staticmethod(fgsm)

    def __init__(self, model: nn.Module, eps: float = 8 / 255, **settings: Any) -> None:
        super().__init__(model, eps=eps, random_start=False, **settings)


class FFGSM(Attack):
    """torchattacks' FFGSM, FGSM-RS (Wong et al., 2020): a uniform start in the l_inf ball,
    one sign step of alpha, projected; eps 8/255, alpha 10/255."""

    function = staticmethod(fgsm)

    def __init__(
        self, model: nn.Module, eps: float = 8 / 255, alpha: float = 10 / 255, **settings: Any
    ) -> None:
        super().__init__(model, eps=eps, alpha=alpha, random_start=True, **settings)


class PGD(Attack):
    """l_inf PGD; torchattacks' defaults (eps 8/255, alpha 2/255, 10 steps, random start)."""

    function = staticmethod(pgd)

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, **settings
        )


class PGDL2(Attack):
    """l_2 PGD; torchattacks' defaults (eps 1.0, alpha 0.2, 10 steps, random start).

    ``eps_for_division`` is accepted and not used: fastrft normalises each sample's own
    gradient with its own guard, where torchattacks adds it to the norm of the batch-mean
    gradient (a sample with a vanishing gradient takes a shorter step there)."""

    function = staticmethod(pgd)

    def __init__(
        self,
        model: nn.Module,
        eps: float = 1.0,
        alpha: float = 0.2,
        steps: int = 10,
        random_start: bool = True,
        eps_for_division: float = 1e-10,
        **settings: Any,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            alpha=alpha,
            steps=steps,
            random_start=random_start,
            norm="l2",
            **settings,
        )


class APGD(Attack):
    """APGD with torchattacks' arguments and defaults (norm "Linf", eps 8/255, 10 steps).

    As torchattacks' does, each call draws its random start from ``seed`` (the same images
    give the same result), here without reseeding the caller's generator; ``seed=None``
    draws from it instead. ``verbose`` is accepted and prints nothing; ``eot_iter`` (gradients
    averaged over a randomised model) must be 1. ``best`` is apgd's (default "adversarial").
    """

    function = staticmethod(apgd)

    def __init__(
        self,
        model: nn.Module,
        norm: str = "Linf",
        eps: float = 8 / 255,
        steps: int = 10,
        n_restarts: int = 1,
        seed: int | None = 0,
        loss: str = "ce",
        eot_iter: int = 1,
        rho: float = 0.75,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        if eot_iter != 1:
            raise ValueError(
                f"eot_iter={eot_iter} is not supported (expectation over a randomised model's "
                "gradients): fastrft attacks deterministic models, pass eot_iter=1"
            )
        super().__init__(
            model,
            eps=eps,
            steps=steps,
            norm=norm,
            loss=loss,
            restarts=n_restarts,
            rho=rho,
            **settings,
        )
        self.seed = seed

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        if self.seed is None:
            return super().__call__(images, labels)
        with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
            torch.manual_seed(self.seed)
            return super().__call__(images, labels)
