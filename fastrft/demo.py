"""The work of `fastrft demo`: its command line, and what it does, in fastrft.demo_options."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from fastrft.atomic import atomic_path
from fastrft.config import ConfigError, RunConfig, load_config, shipped_settings
from fastrft.demo_options import DEFAULT_PRESET, OPTION_KEYS, parse_args
from fastrft.evaluate import delay_time, eps_grid
from fastrft.paths import default_cache_dir
from fastrft.report.demo import delay_threshold, percent, print_table, write_report
from fastrft.toy import Glyphs, glyph_images

# The paper's grid has a step of 1/255 and at most 9 points (eps_g = 8/255); larger budgets
# keep 9 points.
MAX_GRID_INTERVALS = 8


@functools.cache
def settings(preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """configs/demo/PRESET.yaml: the demo's overrides (fine-tuning, --quick, and pretraining or
    the weights to import) and its methods."""
    return shipped_settings(f"demo/{preset}.yaml")


def pretrain_overrides(cfg: RunConfig, quick: bool) -> list[str]:
    """The pretraining run for fine-tuning ``cfg``: its model, image size, seed and device.
    The glyph pretraining is the default preset's; a preset that imports weights has none."""
    s = settings()
    return [
        *s["pretrain"],
        *s["no_augmentation"],
        *(s["quick"]["pretrain"] if quick else []),
        f"model.name={cfg.model.name}",
        f"data.img_size={cfg.data.img_size}",
        f"seed={cfg.seed}",
        f"device={cfg.device}",
    ]


def cache_key(overrides: list[str], task: Glyphs) -> str:
    """A hash of everything that determines the pretrained weights."""
    blob = json.dumps({"overrides": overrides, "task": asdict(task)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pretrain(overrides: list[str], weights: Path, console: Console, progress: bool) -> None:
    """Pretrain through the engine, then write the model's weights to ``weights``."""
    from fastrft.engine import Trainer

    trainer = Trainer(load_config([], overrides), console=console, progress=progress)
    trainer.fit()
    _save_weights(trainer.model, weights)


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def cached_backbone(
    cfg: RunConfig, quick: bool, cache_dir: Path, console: Console, progress: bool = True
) -> dict[str, Any]:
    """The pretrained backbone's weights file, from the cache or pretrained now, and what it
    was pretrained on."""
    task = Glyphs(samples=settings()["quick"]["glyph_samples"]) if quick else Glyphs()
    overrides = pretrain_overrides(cfg, quick)
    folder = cache_dir / "demo-backbones" / cache_key(overrides, task)
    weights = folder / "backbone.safetensors"
    cached = weights.exists()
    if cached:
        console.print(f"reusing the pretrained backbone {weights}")
    else:
        console.print(
            f"pretraining {cfg.model.name} (non-robust) on {task.samples} generated glyph "
            f"images of {task.classes} classes -> {weights}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "glyphs.npz"
        if not data.exists():
            images, labels = glyph_images(task, cfg.data.img_size, seed=cfg.seed)
            with atomic_path(data) as tmp, tmp.open("wb") as f:
                np.savez(f, images=images, labels=labels)  # (to a path, numpy adds .npz)
        run = [*overrides, f"data.root={data}", f"out_dir={folder / 'run'}"]
        pretrain(run, weights, console, progress)
    results = json.loads((folder / "run" / "results.json").read_text())
    return {
        "weights": str(weights),
        "cached": cached,
        "task": f"generated glyphs: {task.classes} classes, {task.samples} images",
        "source_val_acc": results["clean_acc"],
        "pretrain_overrides": overrides,
    }


def grid_step(eps: float) -> float:
    """The accuracy-vs-eps grid's step: 1/255 up to 8 intervals (the paper's), else eps/8."""
    return eps / min(MAX_GRID_INTERVALS, max(1, round(eps * 255)))


def _budget(eps: float) -> str:
    """A budget as an override value: "8/255" for whole 255ths, else exact."""
    k = eps * 255
    return f"{round(k)}/255" if math.isclose(k, round(k), abs_tol=1e-9) else repr(eps)


def finetune_overrides(given: list[str], quick: bool, preset: str = DEFAULT_PRESET) -> list[str]:
    """The preset's settings, then ``given`` (the options' and the user's key=value): the
    overrides shared by the fine-tuning runs. Checked here, before any training."""
    s = settings(preset)
    layers = [*s["finetune"], *(s["quick"]["finetune"] if quick else [])]
    cfg = load_config([], [*layers, *given])
    if cfg.attack.eps <= 0:
        raise ConfigError(
            f"attack.eps: the demo compares robust fine-tuning with standard fine-tuning, so "
            f"it needs a budget > 0 (e.g. --eps 4/255), got {cfg.attack.eps}"
        )
    if cfg.data.source == "digits":
        layers += s.get("no_augmentation", [])
    if not any(item.startswith("eval.grid_step=") for item in given):
        layers.append(f"eval.grid_step={_budget(grid_step(cfg.attack.eps))}")
    cfg = load_config([], [*layers, *given])
    eps_grid(cfg.eval.eps_max or cfg.attack.eps, cfg.eval.grid_step)  # a bad grid fails now
    return [*layers, *given]


def finetune(cfg: RunConfig, console: Console, progress: bool) -> dict[str, Any]:
    """One fine-tuning run through the engine: its final numbers and per-epoch curve."""
    from fastrft.engine import Trainer

    start = time.perf_counter()
    trainer = Trainer(cfg, console=console, progress=progress)
    results = trainer.fit()
    clean = [r["val_clean_acc"] for r in trainer.history]
    threshold = delay_threshold(trainer.num_classes)
    return {
        "clean_acc": results["clean_acc"],
        "adv_acc": results["adv_acc"],
        "expected_robustness": results["expected_robustness"],
        "eps_grid": results["eps_grid"],
        "accuracy_curve": results["accuracy_curve"],
        "delay_time": delay_time(clean, threshold),
        "delay_threshold": threshold,
        "val_clean_acc": clean,
        "eps_per_epoch": [r["eps"] for r in trainer.history],  # the budget trained at
        "schedule": results["schedule"],
        "speed": results["speed"],
        "images": {"train": trainer.train_loader.num_samples, "val": results["num_samples"]},
        "run_dir": str(cfg.out_dir),
        "wall_s": time.perf_counter() - start,
    }


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} CPU thread{'s' * (n != 1)}"


def backbone_for(
    cfg: RunConfig, args: argparse.Namespace, console: Console, progress: bool
) -> dict[str, Any]:
    """Where the fine-tuning starts: a given weights file or timm's weights, else the preset's
    imported weights, else the demo's own pretrained backbone (both cached)."""
    if cfg.model.weights is not None or cfg.model.pretrained:
        origin = cfg.model.weights or "timm's pretrained weights"
        return {"weights": cfg.model.weights, "cached": None, "origin": f"from {origin}"}
    cache_dir = args.cache_dir or default_cache_dir()
    imported = settings(args.preset).get("weights")
    if imported is not None:
        console.rule("[bold]1. the pretrained backbone")
        return imported_backbone(imported, cache_dir, console)
    console.rule("[bold]1. the non-robust backbone")
    backbone = cached_backbone(cfg, args.quick, cache_dir, console, progress)
    backbone["origin"] = (
        f"pretrained non-robustly here on {backbone['task']} "
        f"({percent(backbone['source_val_acc'])}% on their validation split"
        + ("; reused from the cache)" if backbone["cached"] else ")")
    )
    return backbone


def imported_backbone(name: str, cache_dir: Path, console: Console) -> dict[str, Any]:
    """Published weights, imported from their package into the cache (`fastrft weights
    import`) and checked on photos, or reused from there."""
    from fastrft.weights import import_packaged

    imported = import_packaged(name, cache_dir, console)
    return {
        "weights": str(imported.path),
        "cached": imported.reused,
        "origin": f"{name}'s ImageNet weights (non-robust), imported from their package"
        + ("; reused from the cache" if imported.reused else ""),
    }


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


def run(args: argparse.Namespace) -> None:
    """The demo the parsed options ask for; its report folder, printed as a table too."""
    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    start = time.perf_counter()
    console = Console(stderr=True, soft_wrap=True)
    progress = not args.no_progress
    given = [f"{key}={getattr(args, o)}" for o, key in OPTION_KEYS.items() if getattr(args, o)]
    given += ["model.pretrained=true"] if args.pretrained else []
    common = finetune_overrides([*given, *args.overrides], args.quick, args.preset)
    cfg = load_config([], common)

    backbone = backbone_for(cfg, args, console, progress)
    if backbone["cached"] is not None:
        common.append(f"model.weights={backbone['weights']}")
    wall = {"backbone": time.perf_counter() - start}
    runs = {}
    for i, (key, method) in enumerate(settings(args.preset)["methods"].items(), 1):
        console.rule(f"[bold]2.{i} fine-tuning: {method['label']}")
        # a control from a random initialisation drops whichever weights the others start from
        scratch = ["model.weights=null", "model.pretrained=false"] if method.get("scratch") else []
        overrides = [*common, *method["overrides"], *scratch, f"out_dir={out / key}"]
        run = finetune(load_config([], overrides), console, progress)
        runs[key] = {"label": method["label"], "overrides": overrides, **run}
        wall[key] = run["wall_s"]
    wall["total"] = time.perf_counter() - start

    report = {
        "settings": {
            "model": cfg.model.name,
            "source": cfg.data.source,
            "img_size": cfg.data.img_size,
            "epochs": cfg.epochs,
            "eps": cfg.attack.eps,
            "train_attack": f"{cfg.attack.name.upper()}-{cfg.attack.steps}",
            "eval_steps": cfg.eval.steps,
            "eval_strategy": cfg.eval.strategy,
            "seed": cfg.seed,
            "quick": args.quick,
            "preset": args.preset,
            "overrides": common,
        },
        "backbone": backbone,
        "runs": runs,
        "wall_s": wall,
        "device": f"{runs['fix']['speed']}, {_threads()}",
        "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, report)
    print_table(report)
    print(f"report: {out / 'report.md'}  ({wall['total']:.0f} s)")


if __name__ == "__main__":
    from fastrft.cli import main as cli

    cli(["demo", *sys.argv[1:]])
