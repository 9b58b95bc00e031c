"""The attacks fastrft knows by name, in one table: the function each name runs, its
defaults (the step size alpha included), the norms it supports, where it may be used
(training, evaluation) and how many model passes it makes. The engine, evaluation, the
bench, config validation and the command lines all read it; nothing else dispatches on an
attack's name, and the threat models' names are checked here only (:func:`canonical_norm`).

It imports neither torch nor the attacks: the command lines' help reads the names without
loading torch, and the attacks, which read the norms and step sizes here, stay below it.
Each function is named by its import path and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

NORMS = ("linf", "l2")
# the spellings users bring from other libraries ("Linf", "L2", "inf") too
_SPELLINGS = {"linf": "linf", "inf": "linf", "l2": "l2"}
# the spelling AutoAttack and torchattacks take
PEER_NORMS = {"linf": "Linf", "l2": "L2"}
DEFAULT = "apgd"
"""The paper's attack, in training and in evaluation: APGD-CE."""

Role = Literal["training", "evaluation", "checkpoint"]
StepSize = Callable[[Any, int, bool], Any]  # (eps, steps, random_start) -> alpha


def canonical_norm(norm: object) -> str:
    """ "linf" or "l2"; the spellings users bring from other libraries ("Linf", "L2") too."""
    key = str(norm).lower()
    if key not in _SPELLINGS:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    return _SPELLINGS[key]


def pgd_step_size(eps: Any, steps: int, random_start: bool) -> Any:
    """PGD's alpha: 2.5 * eps / steps (Madry et al.); eps a float or a per-sample tensor."""
    return 2.5 * eps / steps


def fgsm_step_size(eps: Any, steps: int, random_start: bool) -> Any:
    """FGSM-RS's alpha: 1.25 * eps from a random start (Wong et al., 2020), eps without."""
    return 1.25 * eps if random_start else eps


@dataclass(frozen=True)
class AttackSpec:
    """One attack: what its name runs, and what the rest of fastrft may ask of it."""

    name: str
    function: Callable[..., Any] | str
    """fn(model, x, y, eps, **settings) -> x_adv, or its import path "module:name"."""
    summary: str
    norms: tuple[str, ...] = NORMS
    training: bool = True
    """May craft the training examples (attack.name)."""
    evaluation: bool = True
    """May evaluate with a per-sample eps: eval.attack, validation, the accuracy curve. Its
    function takes the random start's ``seed`` and ``ids`` (keywords), which make a sample's
    result independent of its batch (:func:`fastrft.kernels.random_start`)."""
    whole_set: bool = False
    """Run by its own package over the whole set once per budget: `fastrft eval` only."""
    iterative: bool = True
    """Takes a step count; otherwise it makes one step."""
    step_size: StepSize | None = None
    """alpha's default; None: the attack sets its own (``own_step_size`` says how)."""
    own_step_size: str = ""
    chooses_best: bool = False
    """Chooses among its iterates (``best``); otherwise it returns its last."""
    trades: bool = False
    """TRADES' inner maximisation (the KL to the clean prediction) runs on it."""
    last_forward: bool = False
    """Ends with a forward whose gradient is never used."""

    def run(self) -> Callable[..., Any]:
        """The attack's function, imported on first use."""
        if callable(self.function):
            return self.function
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)

    def settings(
        self,
        *,
        norm: str,
        steps: int | None = None,
        alpha: float | None = None,
        best: str | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of those given that the attack takes (None: its default)."""
        given = {
            "norm": norm,
            "steps": steps if self.iterative else None,
            "alpha": alpha if self.step_size is not None else None,
            "best": best if self.chooses_best else None,
        }
        return {key: value for key, value in given.items() if value is not None}

    def alpha(self, eps: Any, steps: int, random_start: bool, alpha: Any = None) -> Any:
        """The step size the attack takes: ``alpha`` if given, else its default (None for an
        attack that sets its own)."""
        if alpha is not None or self.step_size is None:
            return alpha
        return self.step_size(eps, steps, random_start)

    def passes(self, steps: int) -> tuple[int, int]:
        """(input-gradient passes, forward-only passes) the attack makes on a batch."""
        return (steps if self.iterative else 1), int(self.last_forward)

    def check_norm(self, norm: str) -> str | None:
        """None if the attack supports ``norm``, else why not and what to do."""
        if norm in self.norms:
            return None
        others = [s.name for s in ATTACKS.values() if s.training and norm in s.norms]
        return (
            f"{self.name} is an {' or '.join(f'l_{n[1:]}' for n in self.norms)} attack: set "
            f"attack.norm={self.norms[0]}, or use {join(others)} for {norm}"
        )


ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec(
            "apgd",
            "fastrft.attacks.apgd:apgd",
            "APGD-CE, the paper's",
            own_step_size="2 * eps, halved as it goes",
            chooses_best=True,
            last_forward=True,
        ),
        AttackSpec(
            "pgd",
            "fastrft.attacks.pgd:pgd",
            "Madry et al.'s PGD",
            step_size=pgd_step_size,
            trades=True,
        ),
        AttackSpec(
            "fgsm",
            "fastrft.attacks.pgd:fgsm",
            "FGSM-RS: one sign step from a random start",
            norms=("linf",),
            evaluation=False,
            iterative=False,
            step_size=fgsm_step_size,
        ),
        AttackSpec(
            "autoattack",
            "fastrft.evaluate:autoattack_accuracy",
            "the standard AutoAttack; needs pyautoattack",
            training=False,
            evaluation=False,
            whole_set=True,
        ),
    )
}


def names(role: Role) -> tuple[str, ...]:
    """The attacks usable in ``role``, in the table's order; "checkpoint": `fastrft eval`."""
    return tuple(
        s.name
        for s in ATTACKS.values()
        if (s.training if role == "training" else s.evaluation)
        or (role == "checkpoint" and s.whole_set)
    )


def describe(role: Role) -> str:
    """The attacks usable in ``role`` with what each is, for help texts."""
    return join(f"{n} ({ATTACKS[n].summary})" for n in names(role))


def trades_attacks() -> list[str]:
    """The attacks TRADES' inner maximisation runs on."""
    return [s.name for s in ATTACKS.values() if s.trades]


def whole_set(name: str | None) -> bool:
    """Whether ``name`` is an attack its own package runs on the whole set per budget."""
    return name in ATTACKS and ATTACKS[name].whole_set


def join(words: Iterable[str]) -> str:
    """ "a, b or c"."""
    words = list(words)
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)
