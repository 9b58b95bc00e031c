"""The lever ladder: one robust training step built eight ways, each rung adding one lever.

    0  eager fp32 NCHW, the attack a user writes today (fastrft.bench.baseline), then AdamW
    1  + bf16 autocast            (or --amp-dtype)
    2  + channels_last            (model and batch)
    3  + frozen parameters        (requires_grad off while the attack runs)
    4  + fused kernels            (fastrft.attacks through the engine's Attacker)
    5  + torch.compile            (the model; the attack loop stays eager, see DESIGN.md)
    6  + CUDA graphs              (the whole k-step attack replayed as one graph: the default)
    7  + whole step in one graph  (attack, loss, backward and AdamW: speed.graph_step)

A step is the trainer's own, built by fastrft.engine.step.TrainStep from the rung's levers:
craft x_adv (the baseline attacks with the model in eval mode, as attack libraries run it),
the objective's loss on it in train mode under the rung's autocast, backward (through the
loss scaler with fp16), optimizer step, gradients set to None. Inputs are random pixels and
labels.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from fastrft.attack_registry import ATTACKS
from fastrft.attacks.core import attack_mode
from fastrft.attacks.losses import attack_loss
from fastrft.config import AttackConfig
from fastrft.engine.attacker import Attacker
from fastrft.engine.compiled import CompileCounter, compile_model
from fastrft.engine.graphs import CaptureFailed
from fastrft.engine.speed import Speed
from fastrft.engine.step import AttackFn, TrainStep
from fastrft.models import build_model
from fastrft.objectives import Objective, make_objective

from .baseline import apgd_baseline, pgd_baseline
from .environment import strict_fp32
from .profile import top_operators
from .telemetry import Telemetry, TelemetrySampler
from .timing import Timing, time_calls, timed

LEVERS = ("amp", "channels_last", "freeze", "fused", "compile", "graphs", "graph_step")
RUNG_NAMES = (
    "eager fp32 (baseline)",
    "+ {amp} autocast",
    "+ channels_last",
    "+ frozen params",
    "+ fused kernels",
    "+ torch.compile",
    "+ CUDA graphs",
    "+ whole step in one graph",
)
STRICT_NAME = "eager fp32, TF32 off (strict baseline)"
AMP_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Workload:
    """What one step processes: the model, the batch and the attack."""

    model: str
    img_size: int
    batch_size: int
    num_classes: int
    attack: AttackConfig
    objective: str
    amp_dtype: torch.dtype
    device: torch.device
    seed: int = 0
    weights: str | None = None
    """A local weights file for the model (random initialisation without one)."""

    @property
    def alpha(self) -> float | None:
        """The step size the baseline uses: the same default as fastrft's attacks (None for
        an attack that sets its own)."""
        a = self.attack
        return ATTACKS[a.name].alpha(a.eps, a.steps, a.random_start, a.alpha)

    def describe(self) -> str:
        a = self.attack
        steps = f"-{a.steps}" if ATTACKS[a.name].iterative else ""
        return (
            f"{self.model} {self.img_size}px batch {self.batch_size}, "
            f"{a.name.upper()}{steps} eps {a.eps * 255:g}/255, {self.objective}"
        )


@dataclass(frozen=True)
class Rung:
    index: int

    def has(self, lever: str) -> bool:
        return self.index > LEVERS.index(lever)

    def name(self, amp_dtype: torch.dtype) -> str:
        return RUNG_NAMES[self.index].format(amp=AMP_NAMES[amp_dtype])


RUNGS = tuple(Rung(i) for i in range(len(RUNG_NAMES)))


def runnable(rung: Rung, device: torch.device) -> str | None:
    """None if the device can run the rung, else why not."""
    if rung.has("graphs") and device.type != "cuda":
        return "CUDA graphs need a CUDA GPU"
    return None


@dataclass
class RungResult:
    rung: int
    name: str
    timing: Timing
    images_per_s: float
    warmup_s: float
    peak_memory_gib: float | None
    telemetry: Telemetry
    energy_per_image_j: float | None
    calls: int
    compiled_graphs: int  # graphs torch.compile built for the rung (0: not compiled)
    strict_fp32: bool = False
    """Timed with TF32 off for matmuls and cuDNN (rung 0's strict row)."""
    profile: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in vars(self).items() if k not in ("timing", "telemetry", "profile")}
        return {**d, **self.timing.as_dict(), **self.telemetry.as_dict()}


def fresh_model(w: Workload) -> nn.Module:
    """The workload's model (its weights file, or a seeded random initialisation), on its
    device."""
    torch.manual_seed(w.seed)
    model = build_model(w.model, w.num_classes, weights=w.weights, img_size=w.img_size)
    return model.to(w.device)


def random_batch(w: Workload, channels_last: bool) -> tuple[Tensor, Tensor]:
    g = torch.Generator(device=w.device).manual_seed(w.seed)
    x = torch.rand(w.batch_size, 3, w.img_size, w.img_size, device=w.device, generator=g)
    y = torch.randint(w.num_classes, (w.batch_size,), device=w.device, generator=g)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def _baseline_attack(rung: Rung, w: Workload, objective: Objective, net: nn.Module) -> AttackFn:
    """The user's own loop: model in eval mode, parameters frozen only from rung 3."""
    a, amp = w.attack, rung_speed(rung, w).autocast
    spec, alpha = ATTACKS[a.name], w.alpha
    steps = a.steps if spec.iterative else 1
    loss_fn = attack_loss(objective.attack_loss, targeted=False)

    def craft(x: Tensor, target: Tensor, eps: Tensor) -> Tensor:
        with attack_mode(net, "eval", freeze=rung.has("freeze")), amp():
            if alpha is None:  # a step size of its own: APGD, as AutoAttack writes it
                return apgd_baseline(net, x, target, a.eps, a.steps)
            return pgd_baseline(net, x, target, a.eps, alpha, steps, loss_fn, a.random_start)

    return craft


def rung_speed(rung: Rung, w: Workload) -> Speed:
    """The rung's levers as the engine's speed settings (frozen parameters and fused kernels
    are the bench's own levers: the engine always has them)."""
    return Speed(
        w.device,
        w.amp_dtype if rung.has("amp") else None,
        rung.has("channels_last"),
        rung.has("compile"),
        rung.has("graphs"),
        rung.has("graph_step"),
    )


def training_step(rung: Rung, w: Workload) -> Callable[[], object]:
    """One robust training step of the rung, on a fresh model and a fixed random batch: the
    trainer's TrainStep with the rung's levers. From rung 4 the attack is the engine's own
    Attacker, captured alone at rung 6; at rung 7 the step's first call captures it whole
    (warm-up and capture count as warm-up time)."""
    speed = rung_speed(rung, w)
    model = fresh_model(w)
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    net = compile_model(model) if speed.compile else model
    x, y = random_batch(w, speed.channels_last)
    objective = make_objective(w.objective)
    capturable = speed.graph_step and w.device.type == "cuda"  # (torch refuses it on the CPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=capturable)
    if rung.has("fused"):
        attack: Attacker | AttackFn = Attacker(net, w.attack, objective, speed)
    else:
        attack = _baseline_attack(rung, w, objective, net)
    step = TrainStep.with_speed(speed, net, objective, optimizer, attack)
    net.train()
    return lambda: step(x, y, w.attack.eps)


def release(device: torch.device) -> None:
    """Free what a rung left behind (models, graphs, compiled code) before the next one."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class Measurement:
    timing: Timing
    warmup_s: float
    peak_memory_gib: float | None
    telemetry: Telemetry
    energy_per_image_j: float | None
    calls: int
    """Calls per timed repeat."""


def measure(
    step: Callable[[], object],
    w: Workload,
    *,
    warmup: int,
    calls: int,
    repeats: int,
    repeat_s: float | None = None,
) -> Measurement:
    """Time a built step (a training step, or an attack call) after ``warmup`` calls.

    With ``repeat_s``, a repeat makes as many calls (at most ``calls``, at least one) as fill
    about that many seconds at the last warm-up call's pace: a baseline step of a second
    needs no ten calls to time, and the GPU's time is the scarce thing."""
    cuda = w.device.type == "cuda"
    warmup_s = timed(lambda: [step() for _ in range(warmup - 1)], w.device) if warmup > 1 else 0.0
    if warmup > 0:
        last_s = timed(step, w.device)
        warmup_s += last_s
        if repeat_s is not None:
            calls = min(calls, max(1, round(repeat_s / last_s)))
    if cuda:  # the steady state's peak: compilation and capture are over
        torch.cuda.reset_peak_memory_stats(w.device)
    with TelemetrySampler(w.device) as sampler:
        timing, _ = time_calls(step, w.device, calls=calls, repeats=repeats)
    peak = torch.cuda.max_memory_allocated(w.device) / 2**30 if cuda else None
    tel = sampler.result
    images = calls * repeats * w.batch_size
    per_image = tel.energy_j / images if tel.energy_j is not None else None
    return Measurement(timing, warmup_s, peak, tel, per_image, calls)


def run_rung(
    rung: Rung, w: Workload, *, profile: bool = False, strict: bool = False, **counts: Any
) -> RungResult:
    """Build the rung's step (compilation and capture happen in its warm-up) and time it
    (``counts``: measure's warmup, calls, repeats, repeat_s); with ``profile``, also list
    the operators its time goes to; with ``strict``, all of it with TF32 off."""
    compiles = CompileCounter()
    try:
        with strict_fp32() if strict else contextlib.nullcontext():
            step = training_step(rung, w)
            m = measure(step, w, **counts)
            ops = top_operators(step, w.device) if profile else None
    finally:
        step = None
        release(w.device)
    return RungResult(
        rung=rung.index,
        name=STRICT_NAME if strict else rung.name(w.amp_dtype),
        timing=m.timing,
        images_per_s=w.batch_size / (m.timing.median_ms / 1e3),
        warmup_s=m.warmup_s,
        peak_memory_gib=m.peak_memory_gib,
        telemetry=m.telemetry,
        energy_per_image_j=m.energy_per_image_j,
        calls=m.calls,
        compiled_graphs=compiles.count(),
        strict_fp32=strict,
        profile=ops,
    )


def largest_batch_that_fits(rung: Rung, w: Workload) -> int | None:
    """After an out-of-memory error: the largest power-of-two fraction of the batch for
    which one step of the rung runs, or None if even a batch of 1 does not."""
    b = w.batch_size // 2
    while b >= 1:
        try:
            step = training_step(rung, replace(w, batch_size=b))
            step()
            return b
        except (torch.cuda.OutOfMemoryError, CaptureFailed):  # (memory can fail a capture)
            b //= 2
        finally:
            step = None
            release(w.device)
    return None
