"""Run configuration: one typed dataclass tree, read from YAML, overridden from the command line.

    cfg = load_config(["configs/paper/base.yaml", "configs/paper/datasets/cars.yaml"],
                      ["attack.eps=8/255", "schedule.name=fix"])

Files are read with yaml.safe_load and merged in order over the defaults, then ``key=value``
overrides (dotted keys) through OmegaConf's dotlist merge. Budgets may be written as fractions
("4/255"). Every error is one line that names the key and says how to fix it.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import sys
import typing
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fastrft import attack_registry as attacks
from fastrft.atomic import write_text
from fastrft.budgets import (
    CURVE_STRATEGIES,
    FRACTION,
    GRID_INTERVALS,
    LINF_GRID_STEP,
    default_grid_step,
    whole_steps,
)
from fastrft.datasets import DATASETS, IDX_DATASETS
from fastrft.schedules import SCHEDULES, make_schedule


class ConfigError(ValueError):
    """A bad configuration value or key; the message names the key and the fix."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def check_device(device: str) -> None:
    _check(
        device in ("auto", "cuda", "cpu") or device.startswith("cuda:"),
        "device",
        f"must be auto, cuda, cuda:N or cpu, got {device!r}",
    )


def check_objective_attack(objective: str, attack: str) -> None:
    trades = attacks.trades_attacks()
    _check(
        objective != "trades" or attack not in attacks.ATTACKS or attacks.ATTACKS[attack].trades,
        "attack.name",
        f"objective trades attacks its KL loss with {attacks.join(trades).upper()} "
        f"(APGD tracks label success): set attack.name={trades[0]}",
    )


@dataclass
class ModelConfig:
    name: str = "tiny_cnn"
    """A fastrft registry name (tiny_cnn) or any timm model name."""
    pretrained: bool = False
    """Ask timm for pretrained weights (needs its hub; offline, use `weights`)."""
    weights: str | None = None
    """A local weights file (.safetensors or a torch state dict) to start from."""

    def __post_init__(self) -> None:
        from fastrft.models import check_model_name  # torch and timm: only once a config loads

        try:
            check_model_name(self.name)
        except ValueError as err:
            raise ConfigError(f"model.name: {err}") from err


@dataclass
class DataConfig:
    source: str = "toy"
    """Where images come from: toy (generated, offline), digits (scikit-learn's 1,797
    handwritten 8x8 digits, shipped with it: offline, grey, split by val_fraction), npz,
    imagefolder, cifar, idx (MNIST-style IDX files: MNIST, KMNIST, EMNIST, ...),
    fashion_mnist (its IDX files, e.g. from `apt-get install dataset-fashion-mnist`) or a
    named layout (cub, aircraft, caltech256, imagenette, cars, dogs), all held in device
    memory; or beton (FFCV files)."""
    root: str | None = None
    """Path of the dataset: an .npz file, an ImageFolder tree (train/ and val/), a CIFAR
    batch folder, a folder of the four IDX files (train-images-idx3-ubyte[.gz],
    train-labels-idx1-ubyte[.gz], t10k-... as val; one common prefix such as
    emnist-digits- and test for t10k accepted), a named dataset's root as its authors ship
    it, or for beton the stem given to `fastrft data convert` (STEM.train.beton,
    STEM.val.beton). fashion_mnist defaults to /usr/share/datasets/fashion-mnist."""
    img_size: int = 16
    """Side of the square images the model sees. Arrays (npz, cifar, idx, digits) no larger
    stay in memory at their own size, grey ones in one channel, and each batch is resized on
    the device (bilinear, antialiased) and given three channels; larger arrays are shrunk
    once at load, image files resized and centre-cropped as they are read; FFCV's decoders
    resize .beton images."""
    train_images: int = 0
    """Train on this many training images (0: all): a seeded draw from the run's seed, equal
    shares per class, the same on resume; beton reads the same draw from its labels. For
    sources without a split of their own, drawn after the val_fraction split."""
    val_images: int = 0
    """Validate and evaluate on this many validation images (0: all), drawn as train_images
    is (another stream of the same seed)."""
    batch_size: int = 64
    """Images per training step (per process under DDP)."""
    eval_batch_size: int = 256
    """Images per evaluation batch."""
    toy_samples: int = 2048
    """Training images of the toy source (a quarter as many for validation)."""
    toy_classes: int = 10
    """Classes of the toy source."""
    val_fraction: float = 0.2
    """Share of a source without its own split held out for validation (seeded)."""
    hflip: bool = True
    """Random horizontal flips (p = 0.5) during training."""
    jitter: float = 0.25
    """Colour jitter strength on brightness, contrast and saturation (0 turns it off)."""
    rotation: float = 2.0
    """Largest random rotation in degrees (0 turns it off)."""
    crop_scale: float = 1.0
    """FFCV training: smallest area share of the random resized crop (1.0: no random crop,
    as in the paper and the in-memory loader)."""

    def __post_init__(self) -> None:
        sources = (
            *("toy", "digits", "npz", "imagefolder", "cifar"),
            *DATASETS,
            *("idx", *IDX_DATASETS, "beton"),
        )
        _check(
            self.source in sources,
            "data.source",
            f"must be one of {', '.join(sources)}, got {self.source!r}",
        )
        if self.source not in ("toy", "digits", *IDX_DATASETS):
            _check(
                self.root is not None,
                "data.root",
                f"is required for source {self.source!r}: set data.root=PATH",
            )
        named = IDX_DATASETS.get(self.source)
        fix = named.how_to_get if named else "point data.root at the dataset"
        for path in self.paths() if self.source not in ("toy", "digits") else []:
            _check(path.exists(), "data.root", f"{str(path)!r} does not exist: {fix}")
        for key in ("img_size", "batch_size", "eval_batch_size", "toy_samples"):
            _check(getattr(self, key) >= 1, f"data.{key}", "must be at least 1")
        for key in ("train_images", "val_images"):
            _check(getattr(self, key) >= 0, f"data.{key}", "must be >= 0 (0: all)")
        _check(self.toy_classes >= 2, "data.toy_classes", "must be at least 2")
        _check(0 < self.val_fraction < 1, "data.val_fraction", "must be in (0, 1)")
        _check(self.jitter >= 0 and self.rotation >= 0, "data.jitter/rotation", "must be >= 0")
        _check(0 < self.crop_scale <= 1, "data.crop_scale", "must be in (0, 1]")

    def paths(self) -> list[Path]:
        """The files or folder the source reads."""
        if self.source == "beton":
            stem = str(self.root).removesuffix(".beton")
            return [Path(f"{stem}.train.beton"), Path(f"{stem}.val.beton")]
        if self.root is None and self.source in IDX_DATASETS:
            return [Path(IDX_DATASETS[self.source].default_root)]
        return [Path(self.root)] if self.root is not None else []


@dataclass
class AttackConfig:
    name: str = attacks.DEFAULT
    """Attack used in training: apgd (the paper's, APGD-CE), pgd or fgsm."""
    eps: float = 4 / 255
    """Target budget eps_g (l_inf: pixels in [0, 1]; '4/255' accepted)."""
    steps: int = 7
    """Attack steps in training (the paper: APGD-CE with 7)."""
    alpha: float | None = None
    """Step size of pgd and fgsm; default 2.5 * eps / steps (fgsm: 1.25 * eps with a random
    start, eps without). apgd sets its own (2 * eps, halved as it goes)."""
    norm: str = "linf"
    """Threat model: linf or l2 (fgsm: linf only)."""
    best: str = "loss"
    """Which iterate apgd returns per sample: loss (the highest-loss one: Madry's inner
    maximisation, the authors' training code) or adversarial (the last misclassified one
    where there is one: AutoAttack's rule, which evaluation always uses). pgd and fgsm return
    their last iterate."""
    random_start: bool = True
    """Start the training attack from a uniform point of the ball rather than from x (the
    authors' training APGD starts from x: configs/paper sets false)."""

    def __post_init__(self) -> None:
        choices = attacks.names("training")
        _check(
            self.name in choices,
            "attack.name",
            f"must be {attacks.join(choices)}, got {self.name!r}",
        )
        spec = attacks.ATTACKS[self.name]
        _check(self.eps >= 0, "attack.eps", f"must be >= 0 (e.g. 4/255), got {self.eps}")
        _check(self.steps >= 1, "attack.steps", f"must be at least 1, got {self.steps}")
        _check(
            self.norm in attacks.NORMS,
            "attack.norm",
            f"must be {attacks.join(attacks.NORMS)}, got {self.norm!r}",
        )
        why = spec.check_norm(self.norm)
        _check(why is None, "attack.norm", str(why))
        _check(self.alpha is None or self.alpha > 0, "attack.alpha", "must be > 0 or unset")
        stepped = [s.name for s in attacks.ATTACKS.values() if s.training and s.step_size]
        _check(
            spec.step_size is not None or self.alpha is None,
            "attack.alpha",
            f"{self.name} sets its own step size ({spec.own_step_size}): unset attack.alpha, "
            f"or use attack.name={stepped[0]}",
        )
        _check(
            self.best in ("loss", "adversarial"),
            "attack.best",
            f"must be loss or adversarial, got {self.best!r}",
        )
        choosers = [s.name for s in attacks.ATTACKS.values() if s.chooses_best]
        _check(
            spec.chooses_best or self.best == "loss",
            "attack.best",
            f"only {attacks.join(choosers)} chooses among its iterates ({self.name} returns "
            "its last): unset attack.best",
        )


@dataclass
class ScheduleConfig:
    name: str = "hinge"
    """Budget schedule: fix (RFT-fix), hinge (Epsilon-Scheduling), linear, step, cosine,
    uniform, auto."""
    # Any, not float: an int (an epoch) and a float (a fraction of the run) mean different things
    t1: Any = None
    """End of the eps = 0 phase: an int is an epoch, a float in [0, 1] a fraction of the run."""
    t2: Any = None
    """End of the ramp (same units as t1)."""
    per_step: bool = False
    """Interpolate the ramp within epochs, step by step."""

    def __post_init__(self) -> None:
        _check(
            self.name in SCHEDULES,
            "schedule.name",
            f"must be one of {', '.join(SCHEDULES)}, got {self.name!r}",
        )
        for key in ("t1", "t2"):
            t = getattr(self, key)
            _check(
                t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)),
                f"schedule.{key}",
                f"must be an epoch (int) or a fraction (float), got {t!r}",
            )


@dataclass
class ObjectiveConfig:
    name: str = "madry"
    """Training loss: standard (no attack), madry (CE on adversarial examples), trades."""
    beta: float = 6.0
    """TRADES' weight of the robustness (KL) term."""

    def __post_init__(self) -> None:
        _check(
            self.name in ("standard", "madry", "trades"),
            "objective.name",
            f"must be standard, madry or trades, got {self.name!r}",
        )
        _check(self.beta >= 0, "objective.beta", "must be >= 0")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """Peak learning rate of the backbone (AdamW)."""
    head_lr: float | None = None
    """Peak learning rate of the new head; default: lr."""
    weight_decay: float = 0.05
    """Decoupled weight decay of the backbone (none on biases, norms, and what a timm backbone
    lists in no_weight_decay(): position embeddings, class tokens, ...)."""
    head_weight_decay: float | None = None
    """Weight decay of the head; default: weight_decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (the authors' code: 0.9, 0.95)."""
    warmup_epochs: float = 1.0
    """Linear learning-rate warm-up, in epochs."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the cosine decay, as a fraction of the peak."""
    accumulate: int = 1
    """Micro-batches per optimizer step (effective batch = data.batch_size * accumulate)."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
        _check(self.accumulate >= 1, "optim.accumulate", "must be at least 1")


@dataclass
class SpeedConfig:
    """Each lever: true, false or "auto" (on where it helps: a CUDA device)."""

    amp: str = "auto"
    """Autocast dtype: bf16, fp16, none, or auto (bf16 on CUDA, none on the CPU)."""
    channels_last: str = "auto"
    """channels_last memory layout for model and inputs."""
    compile: str = "auto"
    """torch.compile the model (not the attack loop)."""
    cuda_graphs: str = "auto"
    """Capture the whole attack in a CUDA graph (CUDA only)."""
    graph_step: str = "auto"
    """Capture the whole training step (attack, loss, backward, AdamW) in one CUDA graph.
    Needs cuda_graphs, one process, optim.accumulate=1 and no fp16. auto leaves it off for
    now: no GPU run has checked it yet (see README)."""

    def __post_init__(self) -> None:
        _check(
            self.amp in ("auto", "bf16", "fp16", "none"),
            "speed.amp",
            f"must be auto, bf16, fp16 or none, got {self.amp!r}",
        )
        for key in ("channels_last", "compile", "cuda_graphs", "graph_step"):
            value = str(getattr(self, key)).lower()
            _check(
                value in ("auto", "true", "false"),
                f"speed.{key}",
                f"must be true, false or auto, got {value!r}",
            )
            setattr(self, key, value)


@dataclass
class EvalConfig:
    attack: str = attacks.DEFAULT
    """Evaluation attack: apgd (APGD-CE, the paper's) or pgd."""
    steps: int = 10
    """Evaluation attack steps (the paper: 10)."""
    eps_max: float | None = None
    """Largest budget of the accuracy-vs-eps curve, >= attack.eps; default: attack.eps."""
    grid_step: float | None = None
    """Spacing of the curve's budgets; default 1/255 (the paper's) for a linf attack.eps in
    whole 255ths, else attack.eps / 8 (l2, or linf 0.03: 9 points up to it). A step given
    here must fit attack.eps and eps_max a whole number of times: checked when the config
    loads, before training."""
    strategy: str = "bisect"
    """How the final curve (and `fastrft eval`'s) finds accuracy at each budget: bisect (the
    default: bisect the sorted budgets for each image's smallest broken one, ceil(log2(G + 1))
    attacks, 5 instead of 16 for 0..16/255; measured within 0.84 points of all at every budget
    and 0.2 in E.adv, inside the numbers' own seed-to-seed noise, see README) or all (attack
    every budget: G attacks per image). Per-epoch validation attacks one budget, where both are
    one attack."""
    seed: int | None = None
    """Key of the evaluation's random starts (validation's and the final curve's): each
    image's start depends on it and on the image's index in the split only; default: the run's
    seed. Another value measures how much the numbers owe to the starts."""
    precision: str = "fp32"
    """Arithmetic of validation and of the final curve (as `fastrft eval`): fp32 (the numbers
    to report) or bf16 (autocast: faster on a GPU, may overstate robustness)."""
    adv_samples: int = 512
    """Validation images attacked each epoch (adversarial accuracy and loss); 0 skips."""

    def __post_init__(self) -> None:
        choices = attacks.names("evaluation")
        _check(
            self.attack in choices,
            "eval.attack",
            f"must be {attacks.join(choices)}, got {self.attack!r}",
        )
        _check(self.steps >= 1, "eval.steps", "must be at least 1")
        _check(
            self.grid_step is None or self.grid_step > 0, "eval.grid_step", "must be > 0 or unset"
        )
        _check(self.eps_max is None or self.eps_max >= 0, "eval.eps_max", "must be >= 0")
        _check(
            self.strategy in CURVE_STRATEGIES,
            "eval.strategy",
            f"must be all or bisect, got {self.strategy!r}",
        )
        _check(
            self.precision in ("fp32", "bf16"),
            "eval.precision",
            f"must be fp32 or bf16, got {self.precision!r}",
        )
        _check(self.adv_samples >= 0, "eval.adv_samples", "must be >= 0")


@dataclass
class RunConfig:
    epochs: int = 10
    """Training epochs (the paper: 50)."""
    seed: int = 0
    """Seed of data order, initialisation, augmentation and attacks."""
    out_dir: str = "runs/default"
    """Run directory: config, checkpoints, logs and results. An existing run resumes."""
    device: str = "auto"
    """cuda, cpu, or auto (cuda when available)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        check_device(self.device)
        check_objective_attack(self.objective.name, self.attack.name)
        bounds = [self._schedule_time(key) for key in ("t1", "t2")]
        _check(
            None in bounds or bounds[0] <= bounds[1],
            "schedule.t1",
            f"must not come after schedule.t2 ({self.schedule.t1} > {self.schedule.t2})",
        )
        self._check_schedule()
        self._check_budgets()

    def _schedule_time(self, key: str) -> float | None:
        """schedule.t1 or t2 as a fraction of the run; an out-of-range value is refused with
        the reading used (an int is an epoch, a float a fraction) and how to write the other."""
        t = getattr(self.schedule, key)
        if t is None:
            return None
        if isinstance(t, float):
            _check(
                0 <= t <= 1,
                f"schedule.{key}",
                f"{t!r} is a float, read as a fraction of the run, so it must lie in [0, 1]; "
                f"for an epoch write an int (schedule.{key}={max(int(t), 0)})",
            )
            return t
        _check(
            0 <= t <= self.epochs,
            f"schedule.{key}",
            f"{t!r} is an int, read as an epoch, so it must lie in [0, {self.epochs}] "
            f"(epochs={self.epochs}); for a fraction of the run write a float in [0, 1] "
            f"(schedule.{key}=0.5 is halfway)",
        )
        return t / self.epochs

    def _check_schedule(self) -> None:
        """Build the schedule as training will, so what only it refuses (t1 for a schedule
        without a ramp, a default t1 after the given t2) fails at load, not at run start."""
        s = self.schedule
        try:
            make_schedule(s.name, self.attack.eps, self.epochs, t1=s.t1, t2=s.t2, seed=self.seed)
        except ValueError as err:
            raise ConfigError(f"schedule: {err}") from err

    def ambiguities(self) -> list[str]:
        """Values that are valid but easily meant as something else: an int t1/t2 of 1 is
        epoch 1, where 1.0 is the end of the run."""
        return [
            f"schedule.{key}=1 is an int, read as epoch 1 of {self.epochs}; write "
            f"schedule.{key}=1.0 for the end of the run"
            for key in ("t1", "t2")
            if type(getattr(self.schedule, key)) is int  # bools were refused
            and getattr(self.schedule, key) == 1
            and self.epochs > 1
        ]

    def eval_seed(self) -> int:
        """The key of the evaluation's random starts: eval.seed, default the run's seed."""
        return self.seed if self.eval.seed is None else self.eval.seed

    def eval_grid(self) -> tuple[float, float]:
        """(eps_max, grid_step) of the final accuracy-vs-eps curve, defaults filled in."""
        eps_max = self.attack.eps if self.eval.eps_max is None else self.eval.eps_max
        step = self.eval.grid_step
        if step is None:
            step = default_grid_step(self.attack.norm, self.attack.eps, eps_max)
        return eps_max, step

    def _check_budgets(self) -> None:
        """Budgets that would fail or mislead only after training: an l_inf budget beyond the
        pixel range (8 for 8/255), a curve that stops short of attack.eps or misses it."""
        eps, eps_max = self.attack.eps, self.eval.eps_max
        for key, value in (("attack.eps", eps), ("eval.eps_max", eps_max)):
            if self.attack.norm == "linf" and value is not None and value > 1:
                raise ConfigError(
                    f"{key}: {value:g} exceeds the pixel range [0, 1] of an l_inf budget; "
                    f"did you mean {value:g}/255?"
                )
        if eps_max is not None and eps_max < eps:
            raise ConfigError(
                f"eval.eps_max: {eps_max:.6g} is below attack.eps ({eps:.6g}); the curve must "
                "reach the run's budget: raise eval.eps_max or leave it unset"
            )
        eps_max, step = self.eval_grid()
        # only a step given by hand can miss attack.eps (the default fits it); refused, not
        # added to the grid: E.adv's trapezoids stay even
        if whole_steps(eps, step) is None:
            raise ConfigError(
                f"attack.eps: {eps:.6g} is not on the evaluation grid (multiples of "
                f"eval.grid_step = {step:.6g}), so Adv and E.adv could not be measured at it; "
                f"set attack.eps={_nearest(eps, step)} or eval.grid_step={eps:g}/"
                f"{GRID_INTERVALS}"
            )
        if whole_steps(eps_max, step) is None:
            raise ConfigError(
                f"eval.eps_max: {eps_max:.6g} is not a whole number of eval.grid_step "
                f"({step:.6g}); set eval.eps_max={_nearest(eps_max, step)}"
            )


def _nearest(value: float, step: float) -> str:
    """The grid point nearest ``value`` (at least one step), as a config value."""
    point = max(round(value / step), 1) * step
    in_255ths = whole_steps(point, LINF_GRID_STEP)
    return f"{in_255ths}/255" if in_255ths is not None else f"{point:.6g}"


def _float_fields(cls: type) -> dict[str, Any]:
    """{field: float marker or nested dataclass} for the float-typed fields of a config class."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            out[f.name] = hint
        elif float in typing.get_args(hint) or hint is float:
            out[f.name] = float
    return out


def _parse_fractions(raw: dict[str, Any], cls: type = RunConfig, prefix: str = "") -> None:
    """Turn '4/255' into 4/255 in the float fields of ``raw``, in place."""
    for name, kind in _float_fields(cls).items():
        if name not in raw:
            continue
        value = raw[name]
        if is_dataclass(kind) and isinstance(value, dict):
            _parse_fractions(value, kind, f"{prefix}{name}.")
        elif kind is float and isinstance(value, str):
            match = FRACTION.match(value)
            _check(
                match is not None,
                f"{prefix}{name}",
                f"expected a number or a fraction such as 4/255, got {value!r}",
            )
            num, den = float(match.group(1)), float(match.group(2))
            _check(den != 0, f"{prefix}{name}", "division by zero")
            raw[name] = num / den


def known_keys(schema: type, prefix: str = "", leaves_only: bool = False) -> list[str]:
    """The dotted keys of a config dataclass (its sections too, unless ``leaves_only``)."""
    keys = []
    for f in fields(schema):
        hint = typing.get_type_hints(schema)[f.name]
        if is_dataclass(hint):
            keys += known_keys(hint, f"{prefix}{f.name}.", leaves_only)
            if leaves_only:
                continue
        keys.append(prefix + f.name)
    return keys


def _merge_error(
    err: OmegaConfBaseException, source: str, schema: type, help_hint: str
) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    msg = str(err).splitlines()[0]
    if "not in" in msg or "Key '" in msg:
        close = difflib.get_close_matches(key, known_keys(schema), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; {help_hint}"
        return ConfigError(f"{key}: unknown key in {source}{hint}")
    return ConfigError(f"{key}: bad value in {source}: {msg}")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """yaml's error in one line: the problem and where (its own message spans lines)."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return " ".join(str(err).split())
    return f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}"


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(
            f"config file {str(p)!r} is not valid YAML: {_yaml_problem(err)}"
        ) from err
    if raw is None:  # an empty file, or comments only
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping of keys, got {type(raw).__name__}"
        )
    return raw


def _read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file the user named: one that sets nothing is most likely a mistake."""
    raw = _read_yaml(path)
    if not raw:
        warn(f"config file {str(path)!r} is empty: it sets nothing, the defaults are used")
    return raw


# the YAML files shipped in the repository's configs/ (fastrft is installed from a clone)
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def shipped_settings(name: str) -> dict[str, Any]:
    """A settings file of configs/ (demo.yaml: the demo's overrides and methods), read as a
    config file is."""
    return _read_yaml(CONFIGS / name)


def read_run_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The config.yaml a run left in ``run_dir``, or None where there is none; one cut short
    by a crash or garbled by an edit is refused, naming the file."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return None
    try:
        raw = _read_yaml(path)
    except ConfigError as err:
        raise ConfigError(f"{err}: repair or delete it") from err
    if not raw:
        raise ConfigError(f"config file {str(path)!r} is empty: repair or delete it")
    return raw


def load_config(
    paths: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults, then ``base`` (a saved run's config), then each YAML file in order, then
    dotted ``key=value`` overrides."""
    cfg = load_typed(RunConfig, paths, overrides, base, "see `fastrft train --help-config`")
    for message in cfg.ambiguities():
        warn(message)
    return cfg


T = typing.TypeVar("T")


def load_typed(
    schema: type[T],
    paths: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
    help_hint: str = "",
) -> T:
    """``schema`` (a config dataclass: a run's, the bench's) from its defaults, then ``base``,
    then each YAML file in order, then dotted ``key=value`` overrides; ``help_hint`` ends the
    error of an unknown key with no close match (where the keys are listed)."""
    merged = OmegaConf.structured(schema)
    layers = [("the saved config", base)] if base is not None else []
    layers += [(str(p), _read_config_file(p)) for p in paths]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. attack.eps=8/255)")
    if overrides:
        try:
            dot = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from err
        layers.append(("the command line", dot))
    for source, raw in layers:
        _parse_fractions(raw, schema)
        try:
            merged = OmegaConf.merge(merged, raw)
        except OmegaConfBaseException as err:
            raise _merge_error(err, source, schema, help_hint) from err
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _merge_error(err, "the config", schema, help_hint) from err


def warn(message: str) -> None:
    """A one-line warning on stderr: the config loads, but says what it assumed."""
    print(f"fastrft: warning: {message}", file=sys.stderr)


def check_key_words(words: Sequence[str], loose: Collection[str]) -> None:
    """Refuse a config key written without '=' on the command line: `epochs 3` would be read
    as a config file named epochs, `--epochs 3` or `--epochs=3` as an unknown flag. ``loose``:
    the words that no flag of the command took as its value (`--out device` is a file)."""
    keys = config_keys()
    for i, word in enumerate(words):
        if word not in loose:
            continue
        flag = word.startswith("-")
        name, equals, value = word.lstrip("-").partition("=")
        key = name.replace("-", "_") if flag else name
        if key not in keys or (not flag and (equals or Path(word).exists())):
            continue
        if not equals:
            following = words[i + 1] if i + 1 < len(words) else ""
            plain = following and "=" not in following and not following.startswith("--")
            value = following if plain else "VALUE"
        form = "a flag" if flag else "a word without '='"
        raise ConfigError(
            f"{word!r}: config keys are set as key=value, not as {form}; "
            f"did you mean {key}={value}?"
        )


@functools.cache
def config_keys() -> frozenset[str]:
    """Every dotted config key (the leaves of RunConfig)."""
    return frozenset(key for key, _, _ in config_help())


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML (saved beside every run, and readable by load_config)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    write_text(path, to_yaml(cfg))


def config_help() -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every key, from the field docstrings."""
    import ast
    import inspect

    docs: dict[str, dict[str, str]] = {}
    for node in ast.parse(inspect.getsource(inspect.getmodule(RunConfig))).body:
        if isinstance(node, ast.ClassDef):
            body, found = node.body, {}
            for a, b in itertools.pairwise(body):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    found[a.target.id] = " ".join(b.value.value.split())
            docs[node.name] = found

    rows: list[tuple[str, str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                rows.append(
                    (prefix + f.name, repr(value), docs.get(type(obj).__name__, {}).get(f.name, ""))
                )

    walk(RunConfig(), "")
    return rows
