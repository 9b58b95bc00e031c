"""The trainer: wires data, model, optimizer, schedule, objective, attacker, checkpoints and
logs, and runs the epochs. Each epoch: eps from the schedule, then for each micro-batch the
training step (fastrft.engine.step.TrainStep, the one the bench times: the attack crafts
x_adv, the objective gives the loss, the optimizer steps); then validation, logs, a
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fastrft import locks
from fastrft.config import ConfigError, RunConfig, read_run_config, save_config, to_yaml
from fastrft.data import build_loaders
from fastrft.errors import TrainingDiverged
from fastrft.evaluate import attack_fn, delay_time, paper_metrics, precision_context, seeded
from fastrft.models import build_model
from fastrft.objectives import make_objective
from fastrft.optim import run_optimizer
from fastrft.paths import check_out_dir
from fastrft.schedules import make_schedule
from fastrft.sweep.rundir import read_results, write_json_atomic

from .attacker import Attacker
from .capture import check_graph_step, refused
from .checkpoint import Checkpointer, rng_state, set_rng_state
from .devices import pick_device
from .distributed import all_reduce_sum, close_distributed, init_distributed
from .graphs import CaptureFailed
from .log import MetricsLog, counted, progress_bar
from .speed import resolve_speed
from .step import TrainStep

CHECK_EVERY = 20  # steps between host syncs (progress, the finite-loss check)
EPOCHS_FIXED = (
    " (a run cannot resume under another epoch count: the eps schedule and the learning-rate"
    " plan are laid out over its epochs)"
)


class Trainer:
    def __init__(self, cfg: RunConfig, console: Console | None = None, progress: bool = True):
        self.cfg = cfg
        self.dist = init_distributed(cfg.device)
        self.device = pick_device(cfg.device, self.dist)
        self.speed = resolve_speed(cfg.speed, self.device)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.show_progress = progress and self.dist.main
        self.run_dir = Path(cfg.out_dir)
        # refused before the data and the model, minutes of work, are built
        if self.dist.main:
            check_out_dir(self.run_dir, "out_dir")
        self._saved_config = read_run_config(self.run_dir)  # None: no config.yaml yet
        torch.manual_seed(cfg.seed + self.dist.rank)

        loaders = build_loaders(
            cfg.data,
            self.device,
            seed=cfg.seed,
            channels_last=self.speed.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.num_classes = loaders.num_classes
        self.train_loader, self.val_loader = loaders.train, loaders.val

        self.model = build_model(
            cfg.model.name,
            self.num_classes,
            pretrained=cfg.model.pretrained,
            weights=cfg.model.weights,
            img_size=cfg.data.img_size,
        )
        self.model.to(self.device)
        if self.speed.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # the attack and evaluation use `net`; the weight update goes through DDP when enabled
        self.net: nn.Module = torch.compile(self.model) if self.speed.compile else self.model
        self.train_net: nn.Module = (
            DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.dist.enabled
            else self.net
        )

        o = cfg.optim
        if self.speed.graph_step:
            check_graph_step(self.dist.enabled, o.accumulate, self.speed.amp)
        self.optimizer, self.lr_schedule = run_optimizer(
            self.model,
            o,
            epochs=cfg.epochs,
            micro_batches=len(self.train_loader),
            capturable=self.speed.graph_step,
        )
        s = cfg.schedule
        self.schedule = make_schedule(
            s.name,
            eps=cfg.attack.eps,
            epochs=cfg.epochs,
            t1=s.t1,
            t2=s.t2,
            per_step=s.per_step,
            steps_per_epoch=len(self.train_loader) if s.per_step else None,
            seed=cfg.seed,
        )
        self.objective = make_objective(cfg.objective.name, cfg.objective.beta)
        self.attacker = Attacker(self.net, cfg.attack, self.objective, self.speed)
        self.train_step = TrainStep.with_speed(  # the step the bench's ladder times
            self.speed,
            self.net,
            self.objective,
            self.optimizer,
            self.attacker,
            lr_schedule=self.lr_schedule,
            train_net=self.train_net,
            accumulate=o.accumulate,
        )
        self.scaler = self.train_step.scaler
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", warn=self._warn)
        self.history: list[dict[str, Any]] = []
        self.log: MetricsLog | None = None  # opened once the directory is known to hold this run

    # -- the run -------------------------------------------------------------------------

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train (resuming if the run directory holds a checkpoint), then evaluate.

        ``on_epoch`` gets each epoch's record once it is checkpointed (a Ray Tune trial reports
        it; raising there stops the run)."""
        lock = None
        try:
            # held while fit() runs: two runs in one directory would interleave logs and
            # checkpoints; taken before anything is written there
            lock = self._lock_run_dir() if self.dist.main else None
            if lock is not None:
                self.checkpointer.remove_leftovers()
            start = self._resume()
            finished = self._finished_results() if start == self.cfg.epochs else None
            if finished is not None:
                return finished
            for epoch in range(start, self.cfg.epochs):
                record = self._train_epoch(epoch)
                record.update(self._validate())
                self.schedule.observe(epoch, record["val_clean_acc"])
                self.history.append(record)
                if self.log is not None:
                    self.log.write(record)
                self._save(epoch)
                if self.dist.main:
                    self.console.print(_summary(record, self.cfg.attack.eps))
                if on_epoch is not None:
                    on_epoch(record)
            return self._final_evaluation()
        except CaptureFailed as e:
            raise refused(e) from e
        finally:
            if self.log is not None:
                self.log.close()
            if lock is not None:
                os.close(lock)
            close_distributed(self.dist)

    def _finished_results(self) -> dict[str, Any] | None:
        """The results.json of a run whose every epoch is trained, or None where its final
        evaluation has still to run (a run stopped during it)."""
        path = self.run_dir / "results.json"
        results = read_results(self.run_dir)
        if results is not None and self.dist.main:
            self.console.print(
                f"{self.run_dir} is finished (all {self.cfg.epochs} epochs): its results are in "
                f"{path}; to evaluate it again, run `fastrft eval {self.run_dir}`",
                markup=False,
                highlight=False,
            )
        return results

    def _lock_run_dir(self) -> int:
        try:
            return locks.acquire(self.run_dir, f"out_dir: {self.run_dir} is in use by another run")
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def _resume(self) -> int:
        saved = self.run_dir / "config.yaml"
        state = self.checkpointer.load()
        # what the run was trained under: its checkpoint's own config (config.yaml may be gone
        # or edited), or config.yaml for a run stopped before its first checkpoint
        ran = yaml.safe_load(state["config"]) if state is not None else self._saved_config
        if ran is not None:
            self._check_same_run(ran)
        if self.dist.main:
            # fit()'s lock has made it; a caller resuming without fit() (a tool, a test) not
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not saved.exists() or saved.read_text() != to_yaml(self.cfg):
                save_config(self.cfg, saved)
            self.log = MetricsLog(self.run_dir)
        if state is None:
            if self.log is not None:  # records of a run stopped before its first checkpoint
                self.log.truncate_after(-1)
            return 0
        self.model.load_state_dict(state["model"])
        self.train_step.load_optimizer(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"][min(self.dist.rank, len(state["rng"]) - 1)])
        self.history = list(state["history"])
        if self.log is not None:
            self.log.truncate_after(state["epoch"])
        if self.dist.main and state["epoch"] + 1 < self.cfg.epochs:
            self.console.print(f"resuming {self.run_dir} after epoch {state['epoch']}")
        return state["epoch"] + 1

    def _warn(self, message: str) -> None:
        if self.dist.main:
            self.console.print(message, markup=False, highlight=False)

    def _check_same_run(self, ran: dict[str, Any]) -> None:
        """``ran``, the config the run directory's run was trained under, must be this one;
        only the speed levers, which change how fast a run goes and not what it computes, may
        differ (a run may go on where a lever cannot: another machine, or a capture torch
        refused)."""
        now = yaml.safe_load(to_yaml(self.cfg))
        differ = _differences({**ran, "speed": None}, {**now, "speed": None})
        if differ:
            raise ConfigError(
                f"out_dir: {self.run_dir} holds a run with another config ({'; '.join(differ)})"
                ": use a new out_dir, or the same config (and overrides) to resume it"
            )
        if ran.get("speed") != now["speed"] and self.dist.main:
            self.console.print(f"resuming with other speed settings: {now['speed']}")

    def _save(self, epoch: int) -> None:
        rngs = [rng_state()]
        if self.dist.enabled:  # every rank's generators, so each resumes its own stream
            rngs = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        if not self.dist.main:
            return
        self.checkpointer.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "schedule": self.schedule.state_dict(),
                "rng": rngs,
                "epoch": epoch,
                "history": self.history,
                "config": to_yaml(self.cfg),
                "num_classes": self.num_classes,
            }
        )

    # -- one epoch -----------------------------------------------------------------------

    def _eps(self, epoch: int, step: int) -> float:
        """The budget the training attack uses: the schedule's, or 0 for an objective that
        never attacks (what a run trained at is what it logs)."""
        if not self.objective.attacks:
            return 0.0
        return self.schedule(epoch, step) if self.cfg.schedule.per_step else self.schedule(epoch)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        loader = self.train_loader
        loader.set_epoch(epoch)
        self.train_net.train()
        totals = torch.zeros(3, device=self.device)  # summed loss, correct, images
        images = 0  # counted on the host: a tensor made from it each step would sync
        start, steps = time.perf_counter(), len(loader)
        with progress_bar(self.console, self.show_progress) as bar:
            task = bar.add_task(
                "train", total=steps, epoch=epoch, eps="-", loss="-", acc="-", rate="-"
            )
            for step, (x, y) in enumerate(loader):
                eps = self._eps(epoch, step)
                loss, logits = self.train_step(x, y, eps, step, steps)
                totals[:2] += torch.stack(
                    [loss.detach().float() * len(y), (logits.argmax(1) == y).sum().float()]
                )
                images += len(y)
                if step % CHECK_EVERY == 0 or step + 1 == steps:
                    loss_sum, correct = totals[:2].tolist()  # the one host sync
                    self._check_finite(loss_sum, epoch, step, eps)
                    bar.update(
                        task,
                        completed=step + 1,
                        eps=f"{eps * 255:.2f}/255",
                        loss=f"{loss_sum / images:.3f}",
                        acc=f"{correct / images:.3f}",
                        rate=f"{images / (time.perf_counter() - start):.0f}",
                    )
        seconds = time.perf_counter() - start
        totals[2].fill_(images)  # a scalar argument: no tensor made from Python data
        all_reduce_sum(totals, self.dist)
        loss_sum, correct, n = totals.tolist()
        return {
            "epoch": epoch,
            "eps": self._eps(epoch, 0),
            # a float, also where the learning rate is a tensor the captured step reads
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_loss": loss_sum / n,
            "train_acc": correct / n,
            "images_per_s": n / seconds,
            "epoch_s": seconds,
        }

    def _check_finite(self, loss_sum: float, epoch: int, step: int, eps: float) -> None:
        if math.isfinite(loss_sum):
            return
        kept = f"epoch {self.history[-1]['epoch']}" if self.history else "none yet"
        raise TrainingDiverged(
            f"the training loss became non-finite at epoch {epoch}, step {step} "
            f"(eps {eps * 255:.2f}/255). Last good checkpoint: {kept}, in "
            f"{self.checkpointer.folder}. Lower optim.lr, or check the data."
        )

    # -- evaluation ----------------------------------------------------------------------

    def _eval_attack(self, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
        e = self.cfg.eval
        fn = attack_fn(e.attack, e.steps, self.cfg.attack.norm, {"validate": False})
        return lambda x, y: fn(self.net, x, y, eps)

    @torch.no_grad()
    def _loss_acc(
        self, attack: Callable[[Tensor, Tensor], Tensor] | None = None, limit: int | None = None
    ) -> tuple[float, float]:
        """Validation loss and accuracy in eval.precision; under ``attack``, the loss at the
        attack's points and the share correct there and on the clean image (AutoAttack's
        rule: a point near x the model gets right does not make up for x)."""
        was_training = self.net.training
        self.net.eval()
        sums, seen = torch.zeros(2, device=self.device), 0  # loss, correct: read once, at the end
        with precision_context(self.cfg.eval.precision, self.device):
            for x, y in self.val_loader:
                if limit is not None and seen >= limit:
                    break
                correct = torch.ones_like(y, dtype=torch.bool)
                if attack is not None:
                    correct = self.net(x).argmax(1) == y
                    with torch.enable_grad():
                        x = attack(x, y)
                logits = self.net(x).float()
                correct &= logits.argmax(1) == y
                sums += torch.stack(
                    [F.cross_entropy(logits, y, reduction="sum"), correct.sum().float()]
                )
                seen += len(y)
        self.net.train(was_training)
        loss, correct = sums.tolist()
        return loss / seen, correct / seen

    def _validate(self) -> dict[str, float]:
        out = {}
        out["val_clean_loss"], out["val_clean_acc"] = self._loss_acc()
        if self.cfg.eval.adv_samples > 0 and self.cfg.attack.eps > 0:
            # the same random starts every epoch, outside the training stream
            with seeded(self.cfg.seed, self.device):
                out["val_adv_loss"], out["val_adv_acc"] = self._loss_acc(
                    self._eval_attack(self.cfg.attack.eps), limit=self.cfg.eval.adv_samples
                )
        return out

    def _final_evaluation(self) -> dict[str, Any]:
        """The paper's numbers (clean, robust at eps_g, the accuracy-vs-eps curve, E.adv) as
        `fastrft eval` computes them: on the bare model (not compiled), in eval.precision,
        seeded with the run's seed."""
        with counted(self.console, self.show_progress, "final evaluation, batches") as progress:
            metrics = paper_metrics(self.model, self.val_loader, self.cfg, progress=progress)
        results = {
            **metrics,
            "delay_time": delay_time([r["val_clean_acc"] for r in self.history]),
            "epochs": self.cfg.epochs,
            "schedule": self.schedule.describe(),
            "speed": self.speed.describe(),
        }
        if self.dist.main:
            write_json_atomic(self.run_dir / "results.json", results)
            self.console.print(
                f"clean {results['clean_acc']:.2%}  adv {results['adv_acc']:.2%}"
                f"  E.adv {results['expected_robustness']:.2%}  -> "
                f"{self.run_dir / 'results.json'}"
            )
        return results


def _differences(ran: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Each dotted key whose value differs between two configs, with both values."""
    out = []
    for key in [*ran, *(k for k in now if k not in ran)]:
        a, b = ran.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            why = EPOCHS_FIXED if f"{prefix}{key}" == "epochs" else ""
            out.append(f"{prefix}{key} is {json.dumps(a)} in the run, {json.dumps(b)} here{why}")
    return out


def _summary(r: dict[str, Any], val_eps: float) -> str:
    """The epoch line: ``eps`` is the budget training used, ``val_eps`` the one validation's
    adversarial accuracy is measured at."""
    adv = f" adv {r['val_adv_acc']:.3f} at {val_eps * 255:.2f}/255" if "val_adv_acc" in r else ""
    return (
        f"epoch {r['epoch']:>3}  eps {r['eps'] * 255:5.2f}/255  lr {r['lr']:.2e}  "
        f"train loss {r['train_loss']:.3f} acc {r['train_acc']:.3f}  val clean "
        f"{r['val_clean_acc']:.3f}{adv}  {r['images_per_s']:.0f} img/s"
    )
