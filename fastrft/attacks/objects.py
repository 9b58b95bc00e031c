"""Attack objects in the style of torchattacks: ``PGD(model, eps=8/255)(images, labels)``.

Thin wrappers over the functions, so a script written for torchattacks switches by changing
its import. Model-mode handling lives in the functions (``model_mode``), done once for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

    forward = __call__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


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
    """l_2 PGD; torchattacks' defaults (eps 1.0, alpha 0.2, 10 steps, random start)."""

    function = staticmethod(pgd)

    def __init__(
        self,
        model: nn.Module,
        eps: float = 1.0,
        alpha: float = 0.2,
        steps: int = 10,
        random_start: bool = True,
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


class FGSM(Attack):
    """FGSM with random start (FGSM-RS) by default; eps 8/255."""

    function = staticmethod(fgsm)

    def __init__(self, model: nn.Module, eps: float = 8 / 255, **settings: Any) -> None:
        super().__init__(model, eps=eps, **settings)


class APGD(Attack):
    """APGD; torchattacks' argument names (norm "Linf"/"L2", n_restarts) are accepted."""

    function = staticmethod(apgd)

    def __init__(
        self,
        model: nn.Module,
        norm: str = "Linf",
        eps: float = 8 / 255,
        steps: int = 10,
        n_restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        **settings: Any,
    ) -> None:
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
