"""SWEEP.yaml: a base config, a grid over any keys (and seeds), and an optional ASHA search.

    name: toy                       # default: the file's stem
    configs: [../toy.yaml]          # base config files, relative to this file
    overrides: {epochs: 4}          # dotted keys set in every run
    grid:                           # every combination of the axes, in this order
      attack.eps: [4/255, 8/255]    #   a config key and its values
      backbone:                     #   a named axis of variants: label -> a config file
        resnet50: ../paper/backbones/resnet50.yaml
      method:                       #   ... or label -> dotted keys
        hinge_5_25: {schedule.name: hinge, schedule.t1: 5, schedule.t2: 25}
    seeds: [0, 1]                   # shorthand for a `seed` axis
    root: runs/sweeps/toy           # run directories (default runs/sweeps/<name>), from the cwd
    tune:                           # ASHA over lr and weight decay (see fastrft.sweep.tune)
      per: [backbone]               #   one search per value of these axes
      fixed: {schedule.name: fix}   #   set during the search only (the paper: RFT-fix)

A run's id names its cell (``attack.eps=4_255,backbone=resnet50,seed=0``), so it is stable
across reruns; over-long or clashing ids end in a hash of the cell.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, NoReturn

import yaml

from fastrft.config import ConfigError, config_keys, load_config

SPEC_KEYS = ("name", "configs", "overrides", "grid", "seeds", "root", "tune")
TUNE_KEYS = (
    "per",
    "fixed",
    "space",
    "metric",
    "samples",
    "grace_period",
    "reduction_factor",
    "trial_time_s",
)
# what ASHA may optimise: a per-epoch validation number of metrics.jsonl, and its direction
TUNE_METRICS = {
    "val_clean_acc": "max",
    "val_adv_acc": "max",
    "val_clean_loss": "min",
    "val_adv_loss": "min",
}
# the paper: lr and weight decay searched over [1e-5, 1e-1]
DEFAULT_SPACE = {"optim.lr": (1e-5, 1e-1), "optim.weight_decay": (1e-5, 1e-1)}
MAX_ID = 120  # longer run ids are cut and end in a hash (file names stay short)


@dataclass(frozen=True)
class Choice:
    """One value of an axis: its label in run ids, and what it adds to a run's config."""

    label: str
    files: tuple[Path, ...] = ()
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Axis:
    name: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Run:
    """One cell of the grid: the config files and overrides of one `fastrft train`."""

    id: str
    cell: tuple[tuple[str, str], ...]  # (axis, label), in grid order
    files: tuple[Path, ...]
    overrides: tuple[str, ...]

    def train_args(self, out_dir: Path) -> list[str]:
        return [*map(str, self.files), *self.overrides, f"out_dir={out_dir}"]

    def fingerprint(self) -> str:
        """A hash of what the run's config is made of: its files (parsed, so comments do not
        count) and overrides. A run that failed on bad input is retried once this changes."""
        inputs = {
            "configs": [yaml.safe_load(f.read_text()) for f in self.files],
            "overrides": list(self.overrides),
        }
        text = json.dumps(inputs, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TuneSpec:
    per: tuple[str, ...]
    fixed: tuple[str, ...]
    space: tuple[tuple[str, float, float], ...]  # (key, low, high), searched log-uniformly
    metric: str
    samples: int
    grace_period: int
    reduction_factor: int
    trial_time_s: float | None

    @property
    def mode(self) -> str:
        return TUNE_METRICS[self.metric]


@dataclass(frozen=True)
class Search:
    """One ASHA search: the config it tunes, and the file its best values go to."""

    id: str
    files: tuple[Path, ...]
    overrides: tuple[str, ...]
    best: Path


@dataclass(frozen=True)
class SweepSpec:
    name: str
    path: Path
    configs: tuple[Path, ...]
    overrides: tuple[str, ...]
    axes: tuple[Axis, ...]
    root: Path
    tune: TuneSpec | None

    def runs(self) -> list[Run]:
        """Every cell of the grid, in grid order, each with its stable id."""
        cells = list(product(*(axis.choices for axis in self.axes)))
        labelled = [
            tuple((a.name, c.label) for a, c in zip(self.axes, cell, strict=True)) for cell in cells
        ]
        ids = _unique_ids(labelled)
        runs = []
        for run_id, cell, choices in zip(ids, labelled, cells, strict=True):
            files, overrides = self._combine(choices)
            if self.tune is not None:  # tuned lr and weight decay, after every other file
                files += (self.search_for(cell).best,)
            runs.append(Run(run_id, cell, files, overrides))
        return runs

    def searches(self) -> list[Search]:
        """The ASHA searches of the tune section: one per combination of its `per` axes."""
        if self.tune is None:
            return []
        per = [a for a in self.axes if a.name in self.tune.per]
        out = []
        for choices in product(*(a.choices for a in per)):
            cell = tuple((a.name, c.label) for a, c in zip(per, choices, strict=True))
            files, overrides = self._combine(choices)
            sid = _search_id(cell)
            best = self.root / "tune" / sid / "best.yaml"
            out.append(Search(sid, files, overrides + self.tune.fixed, best))
        return out

    def search_for(self, cell: Iterable[tuple[str, str]]) -> Search:
        """The search whose tuned values a run of this cell loads."""
        per = self.tune.per if self.tune is not None else ()
        sid = _search_id(tuple(kv for kv in cell if kv[0] in per))
        return next(s for s in self.searches() if s.id == sid)

    def fingerprint(self) -> str:
        """A hash of the sweep's identity: its name and base config (parsed, so comments and
        layout do not count). Extending the grid keeps it; changing the base does not."""
        base = {
            "name": self.name,
            "configs": [yaml.safe_load(p.read_text()) for p in self.configs],
            "overrides": list(self.overrides),
        }
        return hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:12]

    def _combine(self, choices: Sequence[Choice]) -> tuple[tuple[Path, ...], tuple[str, ...]]:
        files = self.configs + tuple(f for c in choices for f in c.files)
        overrides = self.overrides + tuple(o for c in choices for o in c.overrides)
        return files, overrides


def load_spec(path: str | Path, root: str | Path | None = None) -> SweepSpec:
    """Read and check SWEEP.yaml (structure and keys; `check_runs` then loads every cell)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    p = _Parser(path)
    if not isinstance(raw, dict):
        p.fail("must hold a mapping with at least a `grid:`")
    p.only(raw, SPEC_KEYS, "top-level key")
    name = str(raw.get("name") or path.stem)
    axes = p.axes(raw.get("grid"), raw.get("seeds"))
    overrides = p.overrides(raw.get("overrides"), "overrides")
    tune = p.tune(raw["tune"], axes, overrides) if raw.get("tune") is not None else None
    return SweepSpec(
        name=name,
        path=path,
        configs=tuple(p.file(f, "configs") for f in p.listed(raw.get("configs"), "configs")),
        overrides=overrides,
        axes=axes,
        root=Path(root or raw.get("root") or Path("runs") / "sweeps" / _safe(name)).absolute(),
        tune=tune,
    )


def check_runs(spec: SweepSpec, runs: Sequence[Run]) -> None:
    """Load every run's config in-process, so a bad grid value fails before anything starts."""
    for run in runs:
        missing = [f for f in run.files if not f.exists()]
        if missing and spec.tune is not None:
            raise FileNotFoundError(
                f"{spec.path}: run {run.id} needs the tuned config {missing[0]}: run "
                f"`fastrft sweep {spec.path} --tune` first, or remove the tune: section"
            )
        try:
            load_config(run.files, run.overrides)
        except ConfigError as err:
            raise ConfigError(f"{spec.path}: run {run.id}: {err}") from err


def override(key: str, value: Any) -> str:
    """``key=value`` as `fastrft train` reads it (a YAML value on the command line)."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


class _Parser:
    """Checks of one sweep file; every error names the file and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> NoReturn:
        raise ValueError(f"{self.path}: {message}")

    def only(self, raw: dict, allowed: Sequence[str], what: str) -> None:
        for key in raw:
            if key not in allowed:
                self.fail(f"unknown {what} {key!r}; expected one of {', '.join(allowed)}")

    def listed(self, value: Any, what: str) -> list:
        if value is None:
            return []
        if isinstance(value, (str, int, float)):
            return [value]
        if not isinstance(value, list):
            self.fail(f"{what} must be a list")
        return value

    def file(self, name: Any, what: str) -> Path:
        f = (self.path.parent / str(name)).resolve()
        if not f.is_file():
            self.fail(
                f"{what}: config file {str(name)!r} not found (paths are relative to "
                "the sweep file)"
            )
        return f

    def key(self, key: str, what: str) -> str:
        if key not in config_keys():
            close = difflib.get_close_matches(key, sorted(config_keys()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(
                f"{what} {key!r} is not a config key{hint} (`fastrft train --help-config` "
                "lists them)"
            )
        return key

    def overrides(self, value: Any, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(f"{what} must be a mapping of dotted keys to values")
        return tuple(override(self.key(k, f"{what}:"), v) for k, v in flatten(value).items())

    def axes(self, grid: Any, seeds: Any) -> tuple[Axis, ...]:
        if grid is not None and not isinstance(grid, dict):
            self.fail("grid must be a mapping of keys to lists of values")
        grid = dict(grid or {})
        if seeds is not None:
            if "seed" in grid:
                self.fail("give seeds either as seeds: or as grid: {seed: [...]}, not both")
            grid["seed"] = self.listed(seeds, "seeds")
        if not grid:
            self.fail(
                "the grid is empty: give at least one key and its values, e.g. "
                "grid: {schedule.name: [fix, hinge]}"
            )
        return tuple(self.axis(str(name), values) for name, values in grid.items())

    def axis(self, name: str, values: Any) -> Axis:
        if isinstance(values, dict):
            choices = tuple(self.variant(name, str(k), v) for k, v in values.items())
        elif isinstance(values, list):
            self.key(name, "grid key")
            choices = tuple(Choice(_label(v), overrides=(override(name, v),)) for v in values)
        else:
            self.fail(f"grid key {name!r} needs a list of values (or a mapping of variants)")
        if not choices:
            self.fail(f"grid key {name!r} has no values: the grid would be empty")
        dup = [label for label, n in Counter(c.label for c in choices).items() if n > 1]
        if dup:
            self.fail(f"grid key {name!r} lists {dup[0]!r} twice")
        return Axis(name, choices)

    def variant(self, axis: str, label: str, value: Any) -> Choice:
        if isinstance(value, str):
            return Choice(label, files=(self.file(value, f"grid {axis}.{label}"),))
        if isinstance(value, dict):
            return Choice(label, overrides=self.overrides(value, f"grid {axis}.{label}"))
        self.fail(f"grid {axis}.{label} must be a config file or a mapping of dotted keys")

    def tune(self, raw: Any, axes: Sequence[Axis], overrides: Sequence[str]) -> TuneSpec:
        if not isinstance(raw, dict):
            self.fail("tune must be a mapping")
        self.only(raw, TUNE_KEYS, "tune key")
        names = [a.name for a in axes]
        per = tuple(str(a) for a in self.listed(raw.get("per"), "tune.per"))
        for a in per:
            if a not in names:
                self.fail(f"tune.per names {a!r}, which is not a grid axis ({', '.join(names)})")
        metric = str(raw.get("metric", "val_clean_acc"))
        if metric not in TUNE_METRICS:
            self.fail(f"tune.metric must be one of {', '.join(TUNE_METRICS)}, got {metric!r}")
        trial_time = raw.get("trial_time_s")
        return TuneSpec(
            per=per,
            fixed=self.overrides(raw.get("fixed"), "tune.fixed"),
            space=self.space(raw.get("space") or DEFAULT_SPACE, axes, overrides),
            metric=metric,
            samples=self.number(raw, "samples", 16, low=1),
            grace_period=self.number(raw, "grace_period", 1, low=1),
            reduction_factor=self.number(raw, "reduction_factor", 3, low=2),
            trial_time_s=None if trial_time is None else self.number(raw, "trial_time_s", 0, 1),
        )

    def space(
        self, raw: Any, axes: Sequence[Axis], overrides: Sequence[str]
    ) -> tuple[tuple[str, float, float], ...]:
        """(key, low, high) of each searched key; none may be set by the overrides or grid,
        which would override the tuned value."""
        if not isinstance(raw, dict):
            self.fail("tune.space must map keys to [low, high]")
        elsewhere = [*overrides, *(o for a in axes for c in a.choices for o in c.overrides)]
        elsewhere_keys = {o.split("=", 1)[0] for o in elsewhere}
        out = []
        for key, bounds in raw.items():
            self.key(key, "tune.space key")
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError):
                low = high = 0.0
            if not 0 < low < high:
                self.fail(f"tune.space {key} must be [low, high] with 0 < low < high")
            if key in elsewhere_keys:
                self.fail(f"tune.space {key} is also set by overrides or the grid")
            out.append((key, low, high))
        return tuple(out)

    def number(self, raw: dict, key: str, default: int, low: int) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            self.fail(f"tune.{key} must be an integer >= {low}, got {value!r}")
        return value


def flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    """{"schedule": {"name": "fix"}} -> {"schedule.name": "fix"}."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(map(_label, value))
    return value if isinstance(value, str) else json.dumps(value)


def _safe(text: str) -> str:
    """A file-name-safe form: 4/255 -> 4_255."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _readable_id(cell: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{axis}={_safe(label)}" for axis, label in cell)


def _search_id(cell: Sequence[tuple[str, str]]) -> str:
    return _readable_id(cell) or "all"  # "all": one search for the whole grid


def _unique_ids(cells: Sequence[tuple[tuple[str, str], ...]]) -> list[str]:
    """Readable ids; one that is too long, or that clashes once made file-safe (4/255 and
    4_255), ends in a hash of its exact cell instead."""
    ids = [_readable_id(c) for c in cells]
    counts = Counter(ids)
    out = []
    for run_id, cell in zip(ids, cells, strict=True):
        if counts[run_id] > 1 or len(run_id) > MAX_ID:
            digest = hashlib.sha256(json.dumps(cell).encode()).hexdigest()[:8]
            run_id = f"{run_id[: MAX_ID - 9]}-{digest}"
        out.append(run_id)
    return out
