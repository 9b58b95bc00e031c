"""What a CUDA graph captures must never wait on the host. On the CPU, a dispatch mode
records every operator that reads a tensor's value into Python (.item(), bool(tensor)),
makes a shape depend on data (nonzero, masked_select, unique) or copies Python data to the
device (torch.tensor): the step the engine captures (speed.cuda_graphs: the attack;
speed.graph_step: the whole step) calls none, for every attack, norm and objective."""

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastrft.config import AttackConfig, load_config
from fastrft.engine import Trainer
from fastrft.engine.attacker import Attacker
from fastrft.engine.speed import Speed
from fastrft.engine.step import TrainStep
from fastrft.objectives import make_objective
from fastrft.toy import TinyCNN
from tests.engine.test_train import TINY

aten = torch.ops.aten
HOST_SYNCS = {
    aten._local_scalar_dense,  # .item(), float(t), bool(t), if t: ...
    aten.is_nonzero,
    aten.equal,
    aten.nonzero,
    aten.masked_select,
    aten._unique2,
    aten.unique_consecutive,
    aten.unique_dim,
    aten.repeat_interleave,
    aten.lift_fresh,  # torch.tensor(python data): a copy from pageable host memory
}


class HostSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in HOST_SYNCS or _boolean_mask_indexing(func, args):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _boolean_mask_indexing(func, args) -> bool:
    """x[mask] and x[mask] = v: a boolean mask's nonzero runs below the dispatcher."""
    if func.overloadpacket not in (aten.index, aten.index_put, aten.index_put_):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


@pytest.mark.parametrize(
    ("attack", "norm", "objective"),
    [
        ("apgd", "linf", "madry"),
        ("apgd", "l2", "madry"),
        ("pgd", "linf", "madry"),
        ("pgd", "l2", "trades"),
        ("fgsm", "linf", "madry"),
    ],
)
def test_the_captured_step_never_syncs_with_the_host(attack, norm, objective):
    torch.manual_seed(0)
    model = TinyCNN(classes=5, width=8).train()
    eps = 0.5 if norm == "l2" else 8 / 255
    cfg = AttackConfig(name=attack, eps=eps, steps=3, norm=norm)
    obj = make_objective(objective)
    attacker = Attacker(model, cfg, obj, Speed(torch.device("cpu"), None, False, False, False))
    # AdamW reads its step count on the host unless capturable, which needs CUDA: SGD with
    # momentum stands in for it here (tests/engine/test_gpu_engine.py captures AdamW)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    step = TrainStep(model, obj, optimizer, attacker.run, autocast=contextlib.nullcontext).run
    x, y = torch.rand(6, 3, 12, 12), torch.randint(0, 5, (6,))
    budget = torch.full((6,), eps)
    step(x, y, budget)  # lazily built state (the optimizer's) outside the recorder
    with HostSyncs() as syncs:
        step(x, y, budget)
    assert syncs.seen == []


class TensorsFromPython(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket is aten.lift_fresh
        return func(*args, **(kwargs or {}))


def test_a_training_epoch_copies_no_python_data_to_the_device(tmp_path):
    """torch.tensor(data) on a GPU is a copy from pageable memory that waits for the device:
    once per step, it would hold the host back on every step (augmentation included)."""
    cfg = load_config(overrides=[*TINY, "schedule.name=fix", f"out_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, progress=False)
    trainer._resume()
    trainer._train_epoch(0)  # the optimizer creates its state (from Python data) once
    with TensorsFromPython() as made:
        trainer._train_epoch(1)
    assert made.count == 0
