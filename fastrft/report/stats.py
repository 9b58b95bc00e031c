"""A method against the baseline (RFT-fix), per budget and metric, as the paper compares them:
win counts over the configurations where both have results, and a paired t-test across those
configurations (scipy's ttest_rel; none with fewer than two pairs)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from scipy.stats import ttest_rel

from .cells import BASELINE, METRICS, Grid


@dataclass(frozen=True)
class Comparison:
    method: str
    eps: float
    metric: str  # a METRICS label: Clean, Adv, E.adv
    pairs: int
    wins: int  # configurations where the method beats the baseline
    ties: int
    losses: int
    mean_diff: float | None  # method - baseline, averaged over the pairs
    t: float | None  # paired t statistic; None with fewer than 2 pairs or no variance
    p: float | None  # two-sided


def compare(grid: Grid) -> list[Comparison]:
    """Every non-baseline method against the baseline, per budget and metric."""
    out = []
    for method in grid.methods:
        if method == BASELINE:
            continue
        for eps in sorted({c.eps for c in grid.configs}):
            for label, key in METRICS.items():
                pairs = [
                    (grid.value(c, method, key), grid.value(c, BASELINE, key))
                    for c in grid.configs
                    if c.eps == eps
                ]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                out.append(_compare(method, eps, label, pairs))
    return out


def _compare(method: str, eps: float, metric: str, pairs: list[tuple[float, float]]) -> Comparison:
    diffs = [a - b for a, b in pairs]
    t = p = None
    if len(pairs) >= 2:
        with warnings.catch_warnings():  # equal differences: scipy warns and returns nan
            warnings.simplefilter("ignore", RuntimeWarning)
            result = ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
        if math.isfinite(result.statistic):
            t, p = float(result.statistic), float(result.pvalue)
    return Comparison(
        method=method,
        eps=eps,
        metric=metric,
        pairs=len(pairs),
        wins=sum(d > 0 for d in diffs),
        ties=sum(d == 0 for d in diffs),
        losses=sum(d < 0 for d in diffs),
        mean_diff=sum(diffs) / len(diffs) if diffs else None,
        t=t,
        p=p,
    )
