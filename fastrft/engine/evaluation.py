"""Evaluation on the engine's side: the trainer's validation after each epoch and its final
evaluation, and `fastrft eval`'s evaluation of a saved run. They build models, loaders and
devices as training does; the measures themselves are fastrft.evaluate's (pure functions of a
model and batches).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from fastrft import attack_registry, evaluate
from fastrft.attacks import attack_mode
from fastrft.config import ConfigError, RunConfig, load_config
from fastrft.data import build_eval_loader
from fastrft.evaluate import (
    OnProgress,
    Precision,
    Strategy,
    delay_time,
    precision_context,
    seeded,
)
from fastrft.models import build_model
from fastrft.schedules import Schedule

from .checkpoint import Checkpointer, load_checkpoint
from .devices import pick_device
from .distributed import Dist, all_reduce_sum, close_distributed, init_distributed
from .speed import Speed, resolve_speed

# how the files torch.save writes begin: a zip archive, or (before torch 1.6) a pickle
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"
CL = torch.channels_last


def eval_attack(net: nn.Module, cfg: RunConfig, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The attack validation measures robustness under: eval.attack and eval.steps at ``eps``."""
    e = cfg.eval
    fn = evaluate.attack_fn(e.attack, e.steps, cfg.attack.norm, {"validate": False})
    return lambda x, y: fn(net, x, y, eps)


@torch.no_grad()
def loss_acc(
    net: nn.Module,
    loader: Any,
    cfg: RunConfig,
    device: torch.device,
    attack: Callable[[Tensor, Tensor], Tensor] | None = None,
    limit: int | None = None,
) -> tuple[float, float]:
    """Validation loss and accuracy in eval.precision; under ``attack``, the loss at the
    attack's points and the share correct there and on the clean image (AutoAttack's
    rule: a point near x the model gets right does not make up for x)."""
    sums, seen = torch.zeros(2, device=device), 0  # loss, correct: read once, at the end
    full = None  # the loader's batch size: its first batch's
    # parameters frozen as the attack freezes them: the no-grad passes are then one compiled
    # graph with APGD's last (no-grad) pass, not two
    with attack_mode(net, "eval", freeze=True), precision_context(cfg.eval.precision, device):
        for x, y in loader:
            if limit is not None and seen >= limit:
                break
            n = len(y)
            full = full or n
            # a short last batch is padded to the full size (one shape for a compiled model)
            # and its padding dropped from the counts
            x, y = pad_rows(x, full), pad_rows(y, full)
            correct = torch.ones_like(y, dtype=torch.bool)
            if attack is not None:
                correct = net(x).argmax(1) == y
                with torch.enable_grad():
                    x = attack(x, y)
            logits = net(x).float()
            correct = (correct & (logits.argmax(1) == y))[:n]
            sums += torch.stack(
                [F.cross_entropy(logits[:n], y[:n], reduction="sum"), correct.sum().float()]
            )
            seen += n
    loss, correct = sums.tolist()
    return loss / seen, correct / seen


def pad_rows(t: Tensor, size: int) -> Tensor:
    """``t`` with copies of its last row appended up to ``size`` rows, in its memory layout."""
    short = size - len(t)
    if short <= 0:
        return t
    padded = torch.cat([t, t[-1:].expand(short, *t.shape[1:])])
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=CL):
        padded = padded.contiguous(memory_format=CL)
    return padded


def validate(net: nn.Module, loader: Any, cfg: RunConfig, device: torch.device) -> dict[str, float]:
    """An epoch's validation: clean loss and accuracy, and under attack at attack.eps on the
    first eval.adv_samples images."""
    out = {}
    out["val_clean_loss"], out["val_clean_acc"] = loss_acc(net, loader, cfg, device)
    if cfg.eval.adv_samples > 0 and cfg.attack.eps > 0:
        # the same random starts every epoch, outside the training stream
        with seeded(cfg.eval_seed(), device):
            out["val_adv_loss"], out["val_adv_acc"] = loss_acc(
                net,
                loader,
                cfg,
                device,
                eval_attack(net, cfg, cfg.attack.eps),
                limit=cfg.eval.adv_samples,
            )
    return out


def final_results(
    model: nn.Module,
    loader: Any,
    cfg: RunConfig,
    history: Sequence[dict[str, Any]],
    schedule: Schedule,
    speed: Speed,
    progress: OnProgress | None = None,
    d: Dist | None = None,
) -> dict[str, Any]:
    """A trained run's results.json: the paper's numbers (clean, robust at eps_g, the
    accuracy-vs-eps curve, E.adv) as `fastrft eval` computes them (on the bare model, not
    compiled, in eval.precision, its random starts keyed by eval.seed, by default the run's
    seed), and how the run went. Under DDP, ``loader`` is this rank's shard of the split
    (:func:`fastrft.data.build_eval_loader`) and the ranks of ``d`` share the evaluation."""
    d = d or Dist()
    return {
        **evaluate.paper_metrics(model, loader, cfg, progress=progress, **shared(loader, d)),
        "processes": d.world_size,
        "delay_time": delay_time([r["val_clean_acc"] for r in history]),
        "epochs": cfg.epochs,
        "schedule": schedule.describe(),
        "speed": speed.describe(),
    }


def shared(loader: Any, d: Dist) -> dict[str, Any]:
    """paper_metrics' arguments for an evaluation the ranks of ``d`` share, ``loader`` being
    this rank's shard: where the shard starts, and the sum of the counts across ranks."""
    if not d.enabled:
        return {}
    return {"first_index": loader.first_index, "sum_across": functools.partial(all_reduce_sum, d=d)}


def evaluate_checkpoint(
    path: str | Path,
    *,
    eps_max: float | None = None,
    grid_step: float | None = None,
    attack: str | None = None,
    steps: int | None = None,
    precision: Precision | None = None,
    strategy: Strategy | None = None,
    seed: int | None = None,
    overrides: Sequence[str] = (),
    progress: OnProgress | None = None,
) -> dict[str, Any]:
    """The paper's evaluation of a saved run on its validation split, as its training ended
    (fastrft.evaluate.paper_metrics). ``path`` is a checkpoint file, or a run directory whose newest
    readable checkpoint is read as a resume reads it (``prev.pt`` when ``last.pt`` is
    unreadable, with a warning). The run's eval.* settings and seed, with the model in the run's
    memory layout, unless given here. ``attack`` "autoattack" runs AutoAttack once per budget.
    ``overrides`` are config keys (e.g. data.root=PATH, device=cpu) applied over the run's
    saved config, and are checked as at training. ``progress`` as for paper_metrics.

    Under torchrun, the ranks share the evaluation: each evaluates its contiguous shard of the
    split on its own device, and every rank returns the whole set's numbers (the counts are
    summed across ranks), the same as one process gives, since each image's random starts are
    keyed by its index in the split."""
    autoattack = attack_registry.whole_set(attack)
    given = {
        "eval.eps_max": eps_max,
        "eval.grid_step": grid_step,
        "eval.attack": None if autoattack else attack,
        "eval.steps": steps,
        "eval.precision": precision,
        "eval.strategy": strategy,
        "eval.seed": seed,
    }
    options = [f"{key}={value}" for key, value in given.items() if value is not None]
    path, state = _read_checkpoint(Path(path))
    cfg = load_config([], [*options, *overrides], base=yaml.safe_load(state["config"]))
    d = init_distributed(cfg.device)
    try:
        if autoattack and d.enabled:
            raise ConfigError("--attack autoattack runs in one process: drop torchrun")
        device = pick_device(cfg.device, d)  # as training picks it, and checks it
        channels_last = resolve_speed(cfg.speed, device).channels_last  # the trainer's layout
        model = build_model(cfg.model.name, state["num_classes"], img_size=cfg.data.img_size)
        model.load_state_dict(state["model"])
        model.to(device).eval()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        batches = build_eval_loader(
            cfg.data,
            device,
            seed=cfg.seed,
            channels_last=channels_last,
            rank=d.rank,
            world_size=d.world_size,
        )
        measured = evaluate.paper_metrics(
            model, batches, cfg, autoattack, progress, **shared(batches, d)
        )
    finally:
        close_distributed(d)
    return {"checkpoint": str(path), **measured, "processes": d.world_size}


def _read_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file ``path`` or, for a run directory, its newest readable one."""
    if not path.is_dir():
        _check_torch_file(path)
        return path, load_checkpoint(path)
    checkpointer = Checkpointer(path / "checkpoints")
    state = checkpointer.load()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {checkpointer.folder}")
    return checkpointer.loaded_from, state


def _check_torch_file(path: Path) -> None:
    """Refuse a file torch.save did not write (a config, weights in safetensors, ...) by what
    eval takes, before torch names its own internal error for it."""
    if not path.is_file():
        return  # load_checkpoint says so
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    # an empty file (a write cut short) is load_checkpoint's to name
    if head and not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise ValueError(
            f"{path} is not a checkpoint (a file written by `fastrft train`): pass a run "
            "directory, or a checkpoint in one, such as RUN_DIR/checkpoints/last.pt"
        )
