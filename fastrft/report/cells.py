"""The paper's table: a row per configuration (backbone, dataset, budget, and any other key
that sets runs apart), a column per method (fix, hinge, ...); a cell averages its seeds.
A cell with no finished run is missing, never zero."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import fmean

from .collect import RunRecord

METRICS = {"Clean": "clean_acc", "Adv": "adv_acc", "E.adv": "expected_robustness"}
BASELINE = "fix"
BISECTED = "\u2020"  # marks a cell whose curve some run found by bisection
# keys that are columns already, or that a cell averages over (seeds), or that name the method
LABELLED = ("model.name", "data.root", "data.source", "attack.eps", "out_dir", "seed", "device")


def strategy_of(results: dict) -> str:
    """How a run's curve was searched (eval.strategy); a results.json older than the key: all."""
    return results.get("strategy", "all")


def eps_label(eps: float) -> str:
    """A budget in units of 1/255, as the paper writes it: 4/255, 2.5/255."""
    return f"{round(eps * 255, 4):g}/255"


@dataclass(frozen=True, order=True)
class Config:
    """A row of the table: what a method is compared on."""

    backbone: str
    dataset: str
    eps: float
    extra: tuple[tuple[str, str], ...] = ()  # (key, value) of the other keys that differ

    def label(self) -> str:
        parts = [self.backbone, self.dataset, f"eps {eps_label(self.eps)}"]
        return ", ".join(parts + [f"{k}={v}" for k, v in self.extra])

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._=+-]+", "_", self.label().replace(", ", "-"))


@dataclass
class Grid:
    configs: list[Config]
    methods: list[str]  # the baseline (fix) first
    extra_keys: list[str]
    finished: dict[tuple[Config, str], list[RunRecord]] = field(default_factory=dict)
    row_of: dict[str, Config] = field(default_factory=dict)  # run name -> its row

    def runs(self, config: Config, method: str) -> list[RunRecord]:
        return self.finished.get((config, method), [])

    def bisected(self, config: Config, method: str) -> bool:
        """Whether any of the cell's runs found its curve by bisection."""
        return any(strategy_of(r.results) == "bisect" for r in self.runs(config, method))

    def value(self, config: Config, method: str, metric: str) -> float | None:
        """The cell's mean over its finished seeds; None where it has none."""
        runs = self.runs(config, method)
        return fmean(r.results[metric] for r in runs) if runs else None


def build_grid(records: list[RunRecord]) -> Grid:
    placed = [r for r in records if r.config is not None]
    backbone = _short_names([r.config["model.name"] for r in placed])
    extra_keys = _distinguishing_keys(placed)
    grid = Grid([], [], extra_keys)
    for r in placed:
        config = Config(
            backbone[r.config["model.name"]],
            r.dataset,
            float(r.config["attack.eps"]),
            tuple((k, str(r.config.get(k))) for k in extra_keys),
        )
        grid.row_of[r.name] = config
        if r.results is not None:
            grid.finished.setdefault((config, r.method), []).append(r)
    grid.configs = sorted(set(grid.row_of.values()))
    methods = {r.method for r in placed}
    grid.methods = sorted(methods, key=lambda m: (m != BASELINE, m))
    return grid


def _distinguishing_keys(records: list[RunRecord]) -> list[str]:
    """Keys, other than the labelled ones and the schedule, that take several values among the
    runs of one (backbone, dataset, eps, method): those set rows apart (an lr grid, ...)."""
    seen: dict[tuple, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        c = r.config
        group = (c["model.name"], r.dataset, c["attack.eps"], r.method)
        for key, value in c.items():
            if key not in LABELLED and not key.startswith("schedule."):
                seen[group][key].add(str(value))
    return sorted({k for values in seen.values() for k, v in values.items() if len(v) > 1})


def _short_names(names: list[str]) -> dict[str, str]:
    """timm names without their pretrained tag (swin_base_patch4_window7_224), where that
    leaves them distinct."""
    short = {n: n.split(".")[0] for n in set(names)}
    return short if len(set(short.values())) == len(short) else {n: n for n in short}
