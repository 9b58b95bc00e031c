"""Evaluation budgets in plain Python (no torch, so the config can check them at load time):
the paper's grid of budgets, the default step of a threat model's grid, and how a budget is
written (a number or a fraction such as 8/255)."""

from __future__ import annotations

import argparse
import math
import numbers
import re
from fractions import Fraction

# eps_grid's steps as fractions with small denominators (1/255 -> Fraction(1, 255))
MAX_DENOMINATOR = 10**6
LINF_GRID_STEP = 1 / 255  # the paper's
# a budget with no customary unit (l_2, or 0.03 in l_inf): 8 intervals up to it, as 8/255 has
GRID_INTERVALS = 8
# how an accuracy-vs-eps curve is searched: every budget attacked, or each image's smallest
# broken budget bisected (fastrft.evaluate.measure_curve)
CURVE_STRATEGIES = ("all", "bisect")
FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")


def whole_steps(value: float, step: float) -> int | None:
    """How many ``step``s make ``value`` (within float rounding), or None if no whole number
    does (0.03 is no whole number of 1/255 steps; 8/255 is 8)."""
    n = round(value / step)
    return n if math.isclose(n * step, value, rel_tol=1e-9, abs_tol=1e-12) else None


def default_grid_step(norm: str, eps: float, eps_max: float) -> float:
    """The paper's 1/255 for an l_inf eps that is a whole number of 255ths; otherwise (l_2, or
    an l_inf eps such as 0.03) eps / 8, so that eps is on the grid (eps_max / 8 when eps is 0;
    1.0 when both are, the grid then being [0] whatever its step)."""
    if norm == "linf" and whole_steps(eps, LINF_GRID_STEP) is not None:
        return LINF_GRID_STEP
    return (eps or eps_max or GRID_INTERVALS) / GRID_INTERVALS


def eps_grid(eps_max: float = 8 / 255, step: float = 1 / 255) -> list[float]:
    """[0, step, 2 step, ..., eps_max]: the paper's evaluation budgets (9 points for 8/255).

    Points are exact multiples: k/255 exactly as Python writes k/255 (not k * (1/255), which
    can differ in the last bit), so they can serve as keys and compare equal to budgets
    written by hand. ``eps_max`` must be a whole number of steps.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 0 < step < math.inf:
        raise ValueError(f"step must be a finite number > 0 (e.g. 1/255), got {step!r}")
    if isinstance(eps_max, bool) or not isinstance(eps_max, numbers.Real):
        raise ValueError(f"eps_max must be a number >= 0 (e.g. 8/255), got {eps_max!r}")
    if not 0 <= eps_max < math.inf:
        raise ValueError(f"eps_max must be a finite number >= 0 (e.g. 8/255), got {eps_max!r}")
    n = whole_steps(eps_max, step)
    if n is None:
        raise ValueError(
            f"eps_max ({eps_max!r}) must be a whole number of steps ({step!r}), "
            "e.g. eps_max=8/255 with step=1/255"
        )
    unit = Fraction(step).limit_denominator(MAX_DENOMINATOR)
    if not math.isclose(float(unit), step, rel_tol=1e-12):
        unit = Fraction(step)  # no small denominator: exact binary multiples, rounded once
    return [float(k * unit) for k in range(n + 1)]


def fraction_arg(text: str) -> float:
    """argparse type for budgets: a number or a fraction such as 8/255."""
    match = FRACTION.match(text)
    try:
        return float(match.group(1)) / float(match.group(2)) if match else float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(
            f"expected a number or a fraction such as 8/255, got {text!r}"
        ) from err
