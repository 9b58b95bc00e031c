"""Epsilon-Scheduling: the attack budget of each epoch (and optionally each step).

A schedule is eps(t) = a(t) * eps_g with a(t) in [0, 1], a pure function of the (possibly
fractional) epoch t and, for "auto" only, of the validation accuracies it has observed.

Epochs are counted from 0: epoch 0 is the first, epoch ``epochs - 1`` the last, and epoch e
trains with a(e), the paper's formula at t = e. With the paper's default two-hinge schedule
(50 epochs, T1 = 12, T2 = 37), epochs 0..12 train with eps = 0 (a(12) = 0: the ramp starts
from zero there), epoch 13 with eps_g / 25, and epochs 37..49 with the full eps_g.

The times T1 and T2 (``t1``, ``t2``) are given as
- an int: an epoch (``t1=12``). An int is always epochs, whatever its value;
- a float in [0, 1]: a fraction of the run, rounded half up to the nearest epoch
  (``t1=0.25`` of 50 epochs is epoch 13). 0.0 is the start of the run and 1.0 its end,
  t = ``epochs``, so ``t2=1.0`` is the same as ``t2=epochs``: a ramp that ends with the run
  (the paper's "T2 = 50, end to end"), whose last epoch trains at (epochs - 1) / epochs.
  ``t2=1`` (an int) is epoch 1, not the end of the run.

Per step: with ``per_step=True`` and ``steps_per_epoch``, ``sched(epoch, step)`` evaluates a
at t = epoch + step / steps_per_epoch, so ramps rise within each epoch; step 0 gives the
per-epoch value ("uniform" draws a new budget each step instead). Without ``per_step`` the
step is ignored. The paper schedules per epoch only.

Checkpoints: ``state_dict()`` is empty for every schedule but "auto", which keeps the
accuracies it observed and its switch epoch; "uniform" is a pure function of its seed.

Adding a schedule is one decorated class: subclass :class:`Schedule` (or :class:`Ramp` for a
new ramp shape), list the keyword options of :func:`make_schedule` it reads in ``options``,
and decorate it with ``@register("name")``.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

__all__ = ["SCHEDULES", "Ramp", "Schedule", "make_schedule", "register"]

SCHEDULES: dict[str, type[Schedule]] = {}

# the paper's defaults, T1 = 12 and T2 = 37 of 50 epochs, as fractions of any run
HINGE_T1, HINGE_T2 = 0.24, 0.74

# an improvement of exactly ``tolerance`` counts as converged, though in floats it may land
# just above it (0.52 - 0.50 is 0.020000000000000018)
ACCURACY_SLACK = 1e-9

S = TypeVar("S", bound="type[Schedule]")


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Schedule` subclass available as ``make_schedule(name)``."""

    def add(cls: S) -> S:
        if name in SCHEDULES:
            raise ValueError(f"a schedule named {name!r} is already registered; pick another name")
        cls.name = name
        SCHEDULES[name] = cls
        return cls

    return add


class Schedule(ABC):
    """eps(epoch, step) = eps * a(t); subclasses define a through :meth:`fraction`.

    Args:
        eps: the target budget eps_g (e.g. 4/255), >= 0.
        epochs: the length of the run, >= 1.
        per_step: interpolate within each epoch (needs ``steps_per_epoch``).
        steps_per_epoch: optimiser steps per epoch (e.g. ``len(train_loader)``).
    """

    name: ClassVar[str] = ""
    # the keyword options of make_schedule this schedule reads (beyond eps, epochs, per_step)
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        eps: float,
        epochs: int,
        *,
        per_step: bool = False,
        steps_per_epoch: int | None = None,
    ) -> None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0 (e.g. 4/255), got {eps!r}")
        if not math.isfinite(eps):
            raise ValueError(f"eps must be finite, got {eps!r}")
        self.eps = float(eps)
        self.epochs = _positive_int("epochs", epochs, "the length of the run, e.g. epochs=50")
        if steps_per_epoch is not None:
            steps_per_epoch = _positive_int(
                "steps_per_epoch", steps_per_epoch, "e.g. steps_per_epoch=len(train_loader)"
            )
        if per_step and steps_per_epoch is None:
            raise ValueError(
                "per_step=True needs steps_per_epoch (optimiser steps in one epoch, e.g. "
                "len(train_loader)); pass it, or leave per_step off"
            )
        self.per_step = bool(per_step)
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, epoch: int, step: int | None = None) -> float:
        """The budget for ``epoch`` (0-based) and, with ``per_step``, for ``step`` within it."""
        _index("epoch", epoch)
        if step is not None:
            _index("step", step)
            if self.steps_per_epoch is not None and step >= self.steps_per_epoch:
                raise ValueError(
                    f"step must be < steps_per_epoch ({self.steps_per_epoch}), got {step}"
                )
        return self.eps * self.fraction(epoch, step if self.per_step else None)

    @abstractmethod
    def fraction(self, epoch: int, step: int | None) -> float:
        """a in [0, 1] at ``epoch`` (and ``step``, None unless the schedule runs per step)."""

    def time(self, epoch: int, step: int | None) -> float:
        """t = epoch + step / steps_per_epoch: the fractional epoch a ramp is evaluated at."""
        return float(epoch) if step is None else epoch + step / self.steps_per_epoch

    def observe(self, epoch: int, val_accuracy: float) -> None:
        """Feedback after each epoch's validation. Only data-driven schedules use it."""
        return None  # a pure schedule ignores feedback

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume the schedule; nothing for pure schedules."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; refuses state this schedule cannot hold."""
        if state:
            raise ValueError(
                f"schedule {self.name!r} keeps no state, got keys {sorted(state)}; "
                "was the checkpoint made with another schedule?"
            )

    def describe(self) -> str:
        """One line for logs, e.g. "hinge eps=4/255 t1=12 t2=37"."""
        parts = [self.name, f"eps={format_eps(self.eps)}", *self.details()]
        if self.per_step:
            parts.append(f"per_step={self.steps_per_epoch}")
        return " ".join(parts)

    def details(self) -> list[str]:
        """The schedule's own parameters as "key=value" words for :meth:`describe`."""
        return []

    def __repr__(self) -> str:
        return f"<Schedule {self.describe()}>"


def ramp(t: float, start: float, end: float, shape: Callable[[float], float]) -> float:
    """0 before ``start``, shape(u) with u = (t - start) / (end - start) on [start, end),
    1 from ``end`` on (also when start == end: a step)."""
    if t >= end:
        return 1.0
    if t < start:
        return 0.0
    return shape((t - start) / (end - start))


class Ramp(Schedule):
    """0 before T1, a rise from 0 to 1 on [T1, T2), 1 from T2 on; ``shape`` is the rise."""

    options = frozenset({"t1", "t2"})
    default_t1: ClassVar[int | float] = HINGE_T1
    default_t2: ClassVar[int | float] = HINGE_T2

    def __init__(
        self,
        eps: float,
        epochs: int,
        *,
        t1: int | float | None = None,
        t2: int | float | None = None,
        **common: Any,
    ) -> None:
        super().__init__(eps, epochs, **common)
        self.t1, self.t2 = self.resolve(t1, t2)
        if self.t2 > self.epochs:
            raise ValueError(
                f"t2 ({self.t2}) must be <= epochs ({self.epochs}): the ramp must end within "
                "the run; pass a smaller t2 or more epochs"
            )
        if self.t1 > self.t2:
            default = " (the default)" if t1 is None else ""
            raise ValueError(
                f"t1 ({self.t1}{default}) must be <= t2 ({self.t2}): the ramp starts before it "
                "ends; pass a smaller t1 or a larger t2"
            )

    def resolve(self, t1: int | float | None, t2: int | float | None) -> tuple[int, int]:
        """(T1, T2) in epochs, defaults filled in."""
        return (
            epoch_of("t1", self.default_t1 if t1 is None else t1, self.epochs),
            epoch_of("t2", self.default_t2 if t2 is None else t2, self.epochs),
        )

    def fraction(self, epoch: int, step: int | None) -> float:
        return ramp(self.time(epoch, step), self.t1, self.t2, self.shape)

    @staticmethod
    def shape(u: float) -> float:
        """The rise on the ramp, u in [0, 1) -> [0, 1): linear."""
        return u

    def details(self) -> list[str]:
        return [f"t1={self.t1}", f"t2={self.t2}"]


@register("fix")
class Fix(Schedule):
    """RFT-fix: the full budget from the first step."""

    def fraction(self, epoch: int, step: int | None) -> float:
        return 1.0


@register("hinge")
class Hinge(Ramp):
    """The paper's two-hinge schedule: 0 until T1, linear to 1 at T2 (defaults 12 and 37 of
    50 epochs, the same fractions of other runs)."""


@register("linear")
class Linear(Ramp):
    """Linear warm-up: the hinge with T1 = 0; T2 defaults to the end of the run."""

    options = frozenset({"t2"})
    default_t1 = 0
    default_t2 = 1.0

    def details(self) -> list[str]:
        return [f"t2={self.t2}"]


@register("step")
class Step(Ramp):
    """0 before T1, the full budget from T1 on (the paper's T1 = T2 > 0); T1 defaults to the
    hinge's. Give ``t1`` (or ``t2``, or both equal)."""

    def resolve(self, t1: int | float | None, t2: int | float | None) -> tuple[int, int]:
        switch = t1 if t1 is not None else t2
        at = epoch_of("t1", self.default_t1 if switch is None else switch, self.epochs)
        if t1 is not None and t2 is not None and epoch_of("t2", t2, self.epochs) != at:
            raise ValueError(
                f"schedule 'step' switches once, so t1 and t2 must be equal, got t1={t1!r} and "
                f"t2={t2!r}; pass t1 only (or use 'hinge' for a ramp)"
            )
        return at, at

    def details(self) -> list[str]:
        return [f"t1={self.t1}"]


@register("cosine")
class Cosine(Ramp):
    """The hinge with a half-cosine rise, (1 - cos(pi u)) / 2: gentle at both ends."""

    @staticmethod
    def shape(u: float) -> float:
        return (1.0 - math.cos(math.pi * u)) / 2.0


@register("uniform")
class Uniform(Schedule):
    """Each epoch draws eps ~ U[0, eps_g] (each step, with ``per_step``).

    The draw is a pure function of (seed, epoch[, step]), so a resumed run reproduces it with
    no state to save."""

    options = frozenset({"seed"})

    def __init__(self, eps: float, epochs: int, *, seed: int = 0, **common: Any) -> None:
        super().__init__(eps, epochs, **common)
        _index("seed", seed, "numpy seeds are non-negative")
        self.seed = int(seed)

    def fraction(self, epoch: int, step: int | None) -> float:
        key = (self.seed, epoch) if step is None else (self.seed, epoch, step)
        return float(np.random.default_rng(key).random())

    def details(self) -> list[str]:
        return [f"seed={self.seed}"]


@register("auto")
class Auto(Schedule):
    """eps = 0 until validation accuracy converges, then a linear ramp to eps_g at the last
    epoch (epochs - 1).

    Converged at the first epoch e where the best accuracy of the last ``patience`` epochs
    (e - patience + 1 .. e) beats the best before them by at most ``tolerance`` (absolute;
    accuracies are fractions in [0, 1]); so the earliest switch is epoch ``patience``. The
    switch epoch e itself has already trained at eps = 0 (all of it, per step too), and the
    ramp starts from 0 there: a(t) = (t - e) / (epochs - 1 - e) for epochs after e. Call
    :meth:`observe` after every epoch's validation, in order; without it the schedule stays
    at 0.
    """

    options = frozenset({"patience", "tolerance"})

    def __init__(
        self,
        eps: float,
        epochs: int,
        *,
        patience: int = 5,
        tolerance: float = 0.02,
        **common: Any,
    ) -> None:
        super().__init__(eps, epochs, **common)
        self.patience = _positive_int("patience", patience, "epochs without improvement, e.g. 5")
        if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
            raise ValueError(f"tolerance must be a number in [0, 1], got {tolerance!r}")
        if not 0 <= tolerance <= 1:
            raise ValueError(
                f"tolerance must be in [0, 1] (absolute accuracy, e.g. 0.02 for 2%), "
                f"got {tolerance!r}"
            )
        self.tolerance = float(tolerance)
        self.history: list[float] = []
        self.switch_epoch: int | None = None

    def fraction(self, epoch: int, step: int | None) -> float:
        # the whole switch epoch ran at 0 before its validation decided the switch
        if self.switch_epoch is None or epoch <= self.switch_epoch:
            return 0.0
        return ramp(self.time(epoch, step), self.switch_epoch, self.epochs - 1, Ramp.shape)

    def observe(self, epoch: int, val_accuracy: float) -> None:
        """Record ``epoch``'s validation accuracy (a fraction in [0, 1]); epochs in order."""
        if epoch != len(self.history):
            raise ValueError(
                f"observe epochs in order, once each: expected epoch {len(self.history)}, "
                f"got {epoch!r}"
            )
        if (
            isinstance(val_accuracy, bool)
            or not isinstance(val_accuracy, numbers.Real)
            or not 0 <= val_accuracy <= 1
        ):
            raise ValueError(
                f"val_accuracy must be a fraction in [0, 1], got {val_accuracy!r}; "
                "divide percentages by 100"
            )
        self.history.append(float(val_accuracy))
        if self.switch_epoch is None and self.converged():
            self.switch_epoch = epoch

    def converged(self) -> bool:
        """Whether the last ``patience`` observed epochs improved the best accuracy by at most
        ``tolerance``."""
        last = len(self.history) - 1
        if last < self.patience:
            return False
        best_before = max(self.history[: last - self.patience + 1])
        return max(self.history) - best_before <= self.tolerance + ACCURACY_SLACK

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "switch_epoch": self.switch_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"history", "switch_epoch"}:
            raise ValueError(
                f"auto's state holds 'history' and 'switch_epoch', got keys {sorted(state)}; "
                "was the checkpoint made with another schedule?"
            )
        self.history = [float(a) for a in state["history"]]
        self.switch_epoch = state["switch_epoch"]

    def details(self) -> list[str]:
        return [
            f"patience={self.patience}",
            f"tolerance={self.tolerance:g}",
            f"switch={self.switch_epoch}",
        ]


def make_schedule(
    name: str,
    eps: float,
    epochs: int,
    *,
    t1: int | float | None = None,
    t2: int | float | None = None,
    per_step: bool = False,
    steps_per_epoch: int | None = None,
    seed: int = 0,
    patience: int = 5,
    tolerance: float = 0.02,
) -> Schedule:
    """The schedule registered as ``name`` (see :data:`SCHEDULES`), for a run of ``epochs``.

    ``t1``/``t2`` (ints: epochs; floats in [0, 1]: fractions of the run) are read by the
    ramps (hinge, linear: t2 only, step, cosine) and refused by the others; ``seed`` by
    uniform; ``patience`` and ``tolerance`` by auto. See the module docstring.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    for key, value in (("t1", t1), ("t2", t2)):
        if value is not None and key not in cls.options:
            takers = sorted(n for n, c in SCHEDULES.items() if key in c.options)
            raise ValueError(
                f"{key} has no meaning for schedule {name!r}; leave it unset "
                f"(schedules that read it: {takers})"
            )
    given = {"t1": t1, "t2": t2, "seed": seed, "patience": patience, "tolerance": tolerance}
    options = {key: value for key, value in given.items() if key in cls.options}
    return cls(eps, epochs, per_step=per_step, steps_per_epoch=steps_per_epoch, **options)


def epoch_of(name: str, value: int | float, epochs: int) -> int:
    """A time in epochs: an int as is, a float in [0, 1] as a fraction of ``epochs`` rounded
    half up (0.25 of 50 is 13)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be an int (an epoch) or a float in [0, 1] (a fraction of the run), "
            f"got {value!r}"
        )
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0 (epochs count from 0), got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if value > 1:
        raise ValueError(
            f"{name}={value!r} is a float, read as a fraction of the run, so it must be in "
            f"[0, 1]; pass an int for an epoch (e.g. {name}={int(value)})"
        )
    # round(..., 9) first, so that 0.24 * 50 = 11.999999999999998 counts as 12
    return math.floor(round(value * epochs, 9) + 0.5)


def format_eps(eps: float) -> str:
    """4/255 as "4/255"; budgets that are not whole 255ths as plain numbers."""
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"


def _positive_int(name: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 ({hint}), got {value!r}")
    return int(value)


def _index(name: str, value: Any, hint: str = "counted from 0") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 ({hint}), got {value!r}")
