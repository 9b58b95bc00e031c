"""The trainer: wires data, model, optimizer, schedule, objective, attacker, checkpoints and
logs, and runs the epochs. Each epoch: eps from the schedule, then for each micro-batch the
training step (fastrft.engine.step.TrainStep, the one the bench times: the attack crafts
x_adv, the objective gives the loss, the optimizer steps); then validation, logs, a
checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fastrft.config import RunConfig, to_yaml
from fastrft.data import build_eval_loader, build_loaders
from fastrft.errors import TrainingDiverged
from fastrft.models import build_model
from fastrft.objectives import make_objective
from fastrft.optim import run_optimizer
from fastrft.schedules import make_schedule

from .attacker import Attacker
from .capture import check_graph_step, refused
from .checkpoint import rng_state, set_rng_state
from .compiled import CompileCounter, compile_model
from .devices import pick_device
from .distributed import all_reduce_sum, broadcast_state, close_distributed, init_distributed
from .evaluation import final_results, validate
from .graphs import CaptureFailed
from .log import counted, progress_bar
from .rundir import RunDir
from .speed import resolve_speed
from .step import TrainStep

CHECK_EVERY = 20  # steps between host syncs (progress, the finite-loss check)


class Trainer:
    def __init__(self, cfg: RunConfig, console: Console | None = None, progress: bool = True):
        self.cfg = cfg
        self.dist = init_distributed(cfg.device)
        self.device = pick_device(cfg.device, self.dist)
        self.speed = resolve_speed(cfg.speed, self.device)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.show_progress = progress and self.dist.main
        self.run_dir = RunDir(cfg, self.dist.main, self.console)  # checks out_dir: before the data
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
        self.net: nn.Module = compile_model(self.model) if self.speed.compile else self.model
        self.compiles = CompileCounter() if self.speed.compile else None
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
        self.history: list[dict[str, Any]] = []

    # -- the run -------------------------------------------------------------------------

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train (resuming if the run directory holds a checkpoint), then evaluate.

        ``on_epoch`` gets each epoch's record once it is checkpointed (a Ray Tune trial reports
        it; raising there stops the run)."""
        try:
            self.run_dir.lock()
            start = self._resume()
            finished = self.run_dir.finished_results() if start == self.cfg.epochs else None
            if finished is not None:
                return finished
            for epoch in range(start, self.cfg.epochs):
                record = self._train_epoch(epoch)
                record.update(validate(self.net, self.val_loader, self.cfg, self.device))
                if self.compiles is not None:  # graphs compiled so far in this run
                    record["compiled_graphs"] = self.compiles.count()
                self.schedule.observe(epoch, record["val_clean_acc"])
                self.history.append(record)
                self.run_dir.log_epoch(record)
                self._save(epoch)
                if self.dist.main:
                    self.console.print(_summary(record, self.cfg.attack.eps))
                if on_epoch is not None:
                    on_epoch(record)
            return self._final_evaluation()
        except CaptureFailed as e:
            raise refused(e) from e
        finally:
            self.run_dir.close()
            close_distributed(self.dist)

    def _resume(self) -> int:
        """The first epoch to train: 0, or the one after the run directory's checkpoint, whose
        state is then loaded."""
        state = self.run_dir.open()
        if state is None:
            return 0
        self.model.load_state_dict(state["model"])
        self.train_step.load_optimizer(state["optimizer"], state["lr_schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"][min(self.dist.rank, len(state["rng"]) - 1)])
        self.history = list(state["history"])
        if self.dist.main and state["epoch"] + 1 < self.cfg.epochs:
            self.console.print(f"resuming {self.run_dir.path} after epoch {state['epoch']}")
        return state["epoch"] + 1

    def _save(self, epoch: int) -> None:
        rngs = [rng_state()]
        if self.dist.enabled:  # every rank's generators, so each resumes its own stream
            rngs = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        if not self.dist.main:
            return
        self.run_dir.checkpointer.save(
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
            f"{self.run_dir.checkpointer.folder}. Lower optim.lr, or check the data."
        )

    def _final_evaluation(self) -> dict[str, Any]:
        """results.json, written once every epoch is trained (fastrft.engine.evaluation)."""
        # every rank evaluates rank 0's model, the checkpoint's: DDP leaves each rank the
        # BatchNorm statistics of its own last batches
        broadcast_state(self.model, self.dist)
        with counted(self.console, self.show_progress, "final evaluation, batches") as progress:
            results = final_results(
                self.model,
                self._final_loader(),
                self.cfg,
                self.history,
                self.schedule,
                self.speed,
                progress,
                self.dist,
            )
        self.run_dir.write_results(results)
        return results

    def _final_loader(self) -> Any:
        """The final curve's images: the validation loader, or under DDP this rank's shard
        of them, so the ranks share the curve's attacks rather than each making them all."""
        if not self.dist.enabled:
            return self.val_loader
        return build_eval_loader(
            self.cfg.data,
            self.device,
            seed=self.cfg.seed,
            channels_last=self.speed.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )


def _summary(r: dict[str, Any], val_eps: float) -> str:
    """The epoch line: ``eps`` is the budget training used, ``val_eps`` the one validation's
    adversarial accuracy is measured at."""
    adv = f" adv {r['val_adv_acc']:.3f} at {val_eps * 255:.2f}/255" if "val_adv_acc" in r else ""
    return (
        f"epoch {r['epoch']:>3}  eps {r['eps'] * 255:5.2f}/255  lr {r['lr']:.2e}  "
        f"train loss {r['train_loss']:.3f} acc {r['train_acc']:.3f}  val clean "
        f"{r['val_clean_acc']:.3f}{adv}  {r['images_per_s']:.0f} img/s"
    )
