"""`fastrft bench --mode attack`: the attack alone, as a user of fastrft.attacks or of
`fastrft eval` runs it, side by side with the peers people would otherwise run.

    fastrft fp32 eager   fastrft.attacks in fp32, NCHW, no compile (fused kernels on a GPU)
    fastrft fast path    + autocast, channels_last, torch.compile, the attack as one CUDA graph
    torchattacks ...     PGD / PGDL2 / APGD / FFGSM, when torchattacks is installed
    AutoAttack APGD-CE   pyautoattack's APGDAttack (apgd only), when it is installed
    fastrft curve, all / bisect   the accuracy-vs-eps curve up to the budget (its grid, as a
                         run's final evaluation makes it: fp32, no compile) by each strategy
                         of eval.strategy: whole curves per second (apgd and pgd only)

Every variant attacks the same model, batch and budget; each row also gives the robust
accuracy it reached (predictions in fp32), so a speed-up is never bought with a weaker
attack. Labels are the model's own clean predictions, so clean accuracy is 100% by
construction and robust accuracy measures the attack alone; BatchNorm statistics are first
estimated on random batches, so a randomly initialised model's predictions vary with its
input. Set model.weights=FILE for a trained model.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from rich.console import Console
from torch import Tensor, nn

from fastrft import attack_registry
from fastrft.attack_registry import ATTACKS, PEER_NORMS
from fastrft.budgets import CURVE_STRATEGIES, default_grid_step, eps_grid
from fastrft.engine.attacker import Attacker
from fastrft.engine.speed import Speed
from fastrft.evaluate import measure_curve
from fastrft.objectives import make_objective

from .ladder import Measurement, Workload, fresh_model, measure, random_batch, release

Craft = Callable[[], Tensor]
Keep = Callable[[dict[str, Any]], None]  # takes each timed row as it is made


@dataclass
class Variant:
    name: str
    craft: Craft
    peer: bool


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, w: Workload, batches: int = 4) -> None:
    """Running statistics from random batches: without them a fresh network's BatchNorm
    layers in eval mode pass activations that explode or vanish, and every input gets the
    same prediction."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    model.train()
    for i in range(batches):
        model(random_batch(replace(w, seed=w.seed + 1 + i), channels_last=False)[0])
    model.eval()


def fastrft_variants(model: nn.Module, x: Tensor, y: Tensor, w: Workload, args) -> list[Variant]:
    # robust accuracy is set beside the peers', which count a sample broken when any iterate
    # fooled it: apgd returns its points by that rule here, not by the training rule
    spec = ATTACKS[w.attack.name]
    a = replace(w.attack, best="adversarial") if spec.chooses_best else w.attack
    eps, fn = a.eps, spec.run()
    settings = spec.settings(norm=a.norm, steps=a.steps, best=a.best)

    def eager() -> Tensor:
        return fn(model, x, y, eps, random_start=a.random_start, **settings)

    fast_model = copy.deepcopy(model)
    x_fast = x
    if args.channels_last:
        fast_model.to(memory_format=torch.channels_last)
        x_fast = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(fast_model) if args.compile else fast_model
    speed = Speed(  # the Attacker itself compiles nothing: ``net`` is compiled already
        w.device,
        w.amp_dtype,
        args.channels_last,
        compile=args.compile,
        cuda_graphs=w.device.type == "cuda",
    )
    attacker = Attacker(net, a, make_objective("madry"), speed)
    return [
        Variant("fastrft fp32 eager", eager, peer=False),
        Variant(f"fastrft fast path ({speed.describe()})", lambda: attacker(x_fast, y, eps), False),
    ]


def peer_variants(model: nn.Module, x: Tensor, y: Tensor, w: Workload) -> list[Variant]:
    """The installed peers that implement the workload's attack."""
    a, alpha = w.attack, w.alpha
    out = []
    if importlib.util.find_spec("torchattacks"):
        import torchattacks as ta

        linf = a.norm == "linf"
        if a.name == "apgd":
            attack = ta.APGD(model, norm=PEER_NORMS[a.norm], eps=a.eps, steps=a.steps, loss="ce")
        elif a.name == "pgd":
            attack = (ta.PGD if linf else ta.PGDL2)(model, eps=a.eps, alpha=alpha, steps=a.steps)
        else:  # FFGSM is FGSM-RS; torchattacks has no l_2 version
            attack = ta.FFGSM(model, eps=a.eps, alpha=alpha) if linf else None
        if attack is not None:
            out.append(Variant(f"torchattacks {type(attack).__name__}", lambda: attack(x, y), True))
    if a.name == "apgd" and importlib.util.find_spec("pyautoattack"):
        from pyautoattack.autopgd_base import APGDAttack

        aa = APGDAttack(
            model,
            n_iter=a.steps,
            norm=PEER_NORMS[a.norm],
            eps=a.eps,
            loss="ce",
            seed=w.seed,
            device=w.device,
        )
        out.append(Variant("AutoAttack APGD-CE", lambda: aa.perturb(x, y), True))
    return out


@torch.no_grad()
def robust_accuracy(model: nn.Module, x_adv: Tensor, y: Tensor) -> float:
    return (model(x_adv.float().contiguous()).argmax(1) == y).float().mean().item()


def time_variant(
    v: Variant, model: nn.Module, y: Tensor, w: Workload, counts: dict[str, int]
) -> dict[str, Any]:
    m = measure(v.craft, w, **{**counts, "warmup": max(counts["warmup"], 1)})
    return row(v.name, v.peer, m, w, robust_accuracy(model, v.craft(), y))


def row(name: str, peer: bool, m: Measurement, w: Workload, robust_acc: float) -> dict[str, Any]:
    """A timed variant's row: images per second over the batch, and what it reached."""
    return {
        "name": name,
        "peer": peer,
        "images_per_s": w.batch_size / (m.timing.median_ms / 1e3),
        **m.timing.as_dict(),
        "robust_acc": robust_acc,
        "warmup_s": m.warmup_s,
        "peak_memory_gib": m.peak_memory_gib,
        **m.telemetry.as_dict(),
        "energy_per_image_j": m.energy_per_image_j,
        "calls": m.calls,
    }


def curve_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    w: Workload,
    counts: dict[str, int],
    console: Console,
    keep: Keep,
) -> None:
    """The batch's accuracy-vs-eps curve up to the workload's budget, by each strategy: the
    rate at which images get their whole curve, its accuracy at the budget, and the gradient
    passes it took. No rows for an attack that evaluation does not use (fgsm)."""
    a = w.attack
    if a.name not in attack_registry.names("evaluation"):
        return
    grid = eps_grid(a.eps, default_grid_step(a.norm, a.eps, a.eps))
    for strategy in CURVE_STRATEGIES:
        curve = functools.partial(
            measure_curve,
            model,
            [(x, y)],
            grid,
            a.name,
            a.steps,
            a.norm,
            strategy=strategy,
            seed=w.seed,
        )
        name = f"fastrft curve, {strategy} ({len(grid) - 1} budgets)"
        console.print(f"{name} ...", style="dim")
        m = measure(curve, w, **{**counts, "warmup": max(counts["warmup"], 1)})
        last = curve()
        passes = {"gradient_passes": last.gradient_passes}
        keep({**row(name, False, m, w, last.accuracies[-1]), **passes})


def time_all(
    variants: list[Variant],
    model: nn.Module,
    y: Tensor,
    w: Workload,
    counts: dict[str, int],
    console: Console,
    keep: Keep,
) -> None:
    for v in variants:
        console.print(f"{v.name} ...", style="dim")
        keep(time_variant(v, model, y, w, counts))


def bench_attack(
    args: argparse.Namespace,
    w: Workload,
    console: Console,
    save: Callable[[dict[str, Any]], None] = lambda part: None,
) -> dict[str, Any]:
    """The attack mode's rows: fastrft's variants, the peers' (with each row's speed-up over
    each peer), and the curve by each strategy. ``save`` gets the part measured so far after
    each row, so a run cut short leaves its rows on disk."""
    gpu = w.device.type == "cuda"
    counts = {
        "warmup": args.warmup if args.warmup is not None else 1,
        "calls": args.iters if args.iters is not None else (3 if gpu else 1),
        "repeats": args.repeats if args.repeats is not None else 3,
    }
    model = fresh_model(w)
    calibrate_batchnorm(model, w)
    model.eval()
    x, _ = random_batch(w, channels_last=False)
    with torch.no_grad():
        y = model(x).argmax(1)
    part = {"rows": [], "timing": counts, "classes_predicted": int(y.unique().numel())}

    def keep(r: dict[str, Any]) -> None:
        part["rows"].append(r)
        save(part)

    time_all(fastrft_variants(model, x, y, w, args), model, y, w, counts, console, keep)
    release(w.device)  # the fast path's copy, compiled code and graph: the peers' peak is theirs
    time_all(peer_variants(model, x, y, w), model, y, w, counts, console, keep)
    release(w.device)
    rows = part["rows"]
    for r in rows:
        for peer in (p for p in rows if p["peer"]):
            r[f"x {peer['name']}"] = r["images_per_s"] / peer["images_per_s"]
    curve_rows(model, x, y, w, counts, console, keep)  # no ratio: a curve is many attacks
    return part


def columns(part: dict[str, Any]) -> list[tuple[str, str, str]]:
    peers = [r["name"] for r in part["rows"] if r["peer"]]
    return [
        ("attack", "name", ""),
        ("img/s", "images_per_s", ",.0f"),
        ("ms/batch", "median_ms", ".1f"),
        ("robust acc", "robust_acc", ".1%"),
        *((f"x {p}", f"x {p}", ".2f") for p in peers),
        ("grad passes", "gradient_passes", ",d"),
        ("peak GiB", "peak_memory_gib", ".1f"),
        ("warm-up s", "warmup_s", ".1f"),
        ("W", "mean_power_w", ".0f"),
        ("J/img", "energy_per_image_j", ".3f"),
    ]


def notes(part: dict[str, Any]) -> list[str]:
    n = part["classes_predicted"]
    lines = [
        f"labels: the model's own clean predictions ({n} distinct classes in the batch), so "
        "clean accuracy is 100% and robust accuracy measures the attack"
    ]
    if n == 1:
        lines.append(
            "every image got the same prediction: robust accuracy cannot tell the attacks "
            "apart here; set model.weights=FILE for a trained model"
        )
    if any("gradient_passes" in r for r in part["rows"]):
        lines.append(
            "curve rows: images per second whose whole accuracy-vs-eps curve is measured; "
            "robust acc at the budget; gradient passes per batch (eval.strategy)"
        )
    if not any(r["peer"] for r in part["rows"]):
        lines.append("no peers installed: pip install torchattacks pyautoattack (extra `peers`)")
    return lines
