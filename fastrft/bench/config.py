"""The bench's workload as a config: a preset file (configs/bench/NAME.yaml, or any YAML file)
read by the run configs' loader, then key=value overrides, as `fastrft train` reads its own.

The keys are the run config's where they mean the same (model.name, data.batch_size,
attack.*, objective.name, device, seed, epochs), plus what only the bench needs:
model.num_classes, images (with epochs: the run to project) and each mode's targets. Torch
is not imported here: `fastrft bench --help` lists the presets and the keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastrft.config import (
    AttackConfig,
    ConfigError,
    ModelConfig,
    ObjectiveConfig,
    check_device,
    check_objective_attack,
    known_keys,
    load_typed,
)

from .targets import target_problem

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "bench"


@dataclass
class BenchModelConfig:
    name: str = "resnet50"
    """A fastrft registry name (tiny_cnn) or any timm model name."""
    weights: str | None = None
    """A local weights file (.safetensors or a torch state dict); default: random init."""
    num_classes: int = 1000
    """Classifier outputs."""

    def __post_init__(self) -> None:
        ModelConfig(self.name, weights=self.weights)  # the run config's checks of the name
        if self.num_classes < 1:
            raise ConfigError("model.num_classes: must be at least 1")


@dataclass
class BenchDataConfig:
    img_size: int = 224
    """Side of the square random images."""
    batch_size: int = 128
    """Images per step."""

    def __post_init__(self) -> None:
        for key in ("img_size", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: must be at least 1")


def _check_targets(targets: object, mode: str) -> None:
    for key, value in vars(targets).items():
        problem = None if value is None else target_problem(key, value)
        if problem:
            raise ConfigError(f"targets.{mode}.{key}: {problem}")


@dataclass
class TrainTargets:
    speedup: float | None = None
    """Top rung's images/s over rung 0's."""
    limit: float | None = None
    """Top rung's fraction of the limit."""
    minutes: float | None = None
    """Projected minutes of a whole RFT-fix run (needs images and epochs)."""

    def __post_init__(self) -> None:
        _check_targets(self, "train")


@dataclass
class AttackTargets:
    speedup: float | None = None
    """Fast path's images/s over AutoAttack APGD-CE's."""
    fp32_speedup: float | None = None
    """fastrft fp32 eager's images/s over AutoAttack APGD-CE's."""
    acc_gap: float | None = None
    """Most robust-accuracy points between the fast path and AutoAttack."""

    def __post_init__(self) -> None:
        _check_targets(self, "attack")


@dataclass
class Targets:
    train: TrainTargets = field(default_factory=TrainTargets)
    attack: AttackTargets = field(default_factory=AttackTargets)


@dataclass
class BenchConfig:
    device: str = "auto"
    """cuda, cuda:N, cpu, or auto (cuda when available)."""
    seed: int = 0
    """Seed of the model's initialisation and of the random batch."""
    images: int | None = None
    """Training images per epoch of the run to project (with epochs)."""
    epochs: int | None = None
    """Epochs of the run to project (with images)."""
    model: BenchModelConfig = field(default_factory=BenchModelConfig)
    data: BenchDataConfig = field(default_factory=BenchDataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    targets: Targets = field(default_factory=Targets)

    def __post_init__(self) -> None:
        check_device(self.device)
        check_objective_attack(self.objective.name, self.attack.name)
        for key in ("images", "epochs"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}: must be at least 1, or unset")

    def record(self, preset: str) -> dict[str, Any]:
        """The workload as a result's JSON keeps it (flat, as results_table.py reads it)."""
        a = self.attack
        return {
            "preset": preset,
            "model": self.model.name,
            "img_size": self.data.img_size,
            "batch_size": self.data.batch_size,
            "num_classes": self.model.num_classes,
            "attack": a.name,
            "steps": a.steps,
            "eps": a.eps,
            "norm": a.norm,
            "objective": self.objective.name,
            "images": self.images,
            "epochs": self.epochs,
        }


KEYS = known_keys(BenchConfig, leaves_only=True)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset_file(preset: str) -> Path:
    """A preset's file: configs/bench/NAME.yaml, or ``preset`` itself if it names a YAML
    file."""
    if preset.endswith((".yaml", ".yml")):
        return Path(preset)
    path = PRESETS / f"{preset}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(preset, preset_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"--preset: no preset {preset!r}; {hint}the presets: {', '.join(preset_names())} "
            "(or a YAML file)"
        )
    return path


def default_preset(overrides: Sequence[str], cuda: bool) -> str:
    """Without --preset: tiny where the bench runs on the CPU and names no model, else
    resnet50."""
    given = dict(item.partition("=")[::2] for item in overrides)
    device = given.get("device", "auto")
    on_cpu = device == "cpu" or (device == "auto" and not cuda)
    return "tiny" if on_cpu and "model.name" not in given else "resnet50"


def load_bench_config(preset: str, overrides: Sequence[str] = ()) -> BenchConfig:
    """The preset's workload, then the key=value overrides; a bad key or value is one
    ConfigError naming it."""
    return load_typed(
        BenchConfig,
        [preset_file(preset)],
        overrides,
        help_hint="`fastrft bench --help` lists the keys",
    )
