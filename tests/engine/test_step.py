"""The training step's precision: every forward of a step runs under the step's autocast."""

import torch
from torch import nn

from fastrft.engine.step import TrainStep
from fastrft.objectives import make_objective


def test_trades_clean_forward_runs_under_the_steps_autocast():
    """TRADES' clean forward (the attack's target) ran outside autocast, in fp32: a full fp32
    forward per step beside the bf16 ones, and one more compiled variant."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, 7))
    seen = []  # (train mode, output dtype) of every forward
    net.register_forward_hook(lambda m, i, out: seen.append((m.training, out.dtype)))
    step = TrainStep(
        net,
        make_objective("trades", 6.0),
        torch.optim.SGD(net.parameters(), lr=0.1),
        lambda x, target, eps: (x + eps).clamp(0, 1),  # any x_adv: the attack is not tested
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    )
    net.train()
    x, y = torch.rand(6, 3, 5, 5), torch.randint(7, (6,))
    step(x, y, 8 / 255)
    target_forwards = [dtype for training, dtype in seen if not training]
    assert target_forwards == [torch.bfloat16], seen
    assert all(dtype == torch.bfloat16 for _, dtype in seen), seen
