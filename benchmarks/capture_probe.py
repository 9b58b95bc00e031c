"""Whether the whole training step replays from one CUDA graph as it runs eagerly: a compiled
bf16 timm ResNet-18 at 32 px takes the same steps on the same batches twice, from the same
weights, once through ``TrainStep`` replayed from its graph (``speed.graph_step``) and once
eagerly, and the two runs' losses and weight updates are compared. The attack is PGD from x
(no random start), so both runs draw no random numbers and must agree up to bf16 rounding.

    python -m benchmarks.capture_probe --json probe.json

Writes a JSON verdict (and prints it); exit 1 if the capture failed or the runs disagree.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastrft.config import AttackConfig
from fastrft.engine.attacker import Attacker
from fastrft.engine.graphs import CaptureFailed
from fastrft.engine.speed import Speed
from fastrft.engine.step import TrainStep
from fastrft.models import build_model
from fastrft.objectives import make_objective

# bf16 autocast: the two runs round differently (the graph's kernels are the eager ones,
# launched in another order), so they agree to bf16's precision, not bit for bit
LOSS_TOL, UPDATE_TOL = 2e-2, 1e-1


def _speed(graphed: bool) -> Speed:
    return Speed(torch.device("cuda"), torch.bfloat16, True, True, graphed, graphed)


def _run(model: nn.Module, batches: list[tuple[Tensor, Tensor]], graphed: bool) -> dict:
    """The steps on ``model`` (changed in place): per-step losses and ms per step."""
    speed = _speed(graphed)
    net = torch.compile(model)
    objective = make_objective("madry")
    attack = Attacker(net, AttackConfig(name="pgd", steps=3, random_start=False), objective, speed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=graphed)
    step = TrainStep.with_speed(speed, net, objective, optimizer, attack)
    net.train()
    losses, times = [], []
    for x, y in batches:
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss, _ = step(x, y, 8 / 255)
        losses.append(loss.item())  # .item() synchronizes
        times.append(time.perf_counter() - start)
    # the first step compiles (and, graphed, captures): the median of the rest is the speed
    steady = sorted(times[1:])
    return {"losses": losses, "ms_per_step": 1e3 * steady[len(steady) // 2]}


def _update(model: nn.Module, before: list[Tensor]) -> Tensor:
    """What the steps changed in the weights, as one float32 vector."""
    after = model.parameters()
    return torch.cat(
        [(p.detach() - b).flatten().float() for p, b in zip(after, before, strict=True)]
    )


def _rel(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def probe(steps: int = 8, batch: int = 256) -> dict[str, Any]:
    torch.manual_seed(0)
    start = build_model("resnet18", 10, img_size=32).cuda().to(memory_format=torch.channels_last)
    g = torch.Generator(device="cuda").manual_seed(0)
    batches = [
        (
            torch.rand(batch, 3, 32, 32, device="cuda", generator=g).contiguous(
                memory_format=torch.channels_last
            ),
            torch.randint(10, (batch,), device="cuda", generator=g),
        )
        for _ in range(steps)
    ]
    before = [p.detach().clone() for p in start.parameters()]
    graphed_model, eager_model = copy.deepcopy(start), copy.deepcopy(start)
    result: dict[str, Any] = {"model": "resnet18", "img_size": 32, "batch": batch, "steps": steps}
    try:
        result["graphed"] = _run(graphed_model, batches, graphed=True)
    except CaptureFailed as e:
        return {**result, "ok": False, "verdict": f"capture refused: {e}"}
    result["eager"] = _run(eager_model, batches, graphed=False)
    loss_diff = max(
        abs(a - b) / max(abs(b), 1e-12)
        for a, b in zip(result["graphed"]["losses"], result["eager"]["losses"], strict=True)
    )
    update_diff = _rel(_update(graphed_model, before), _update(eager_model, before))
    ok = loss_diff <= LOSS_TOL and update_diff <= UPDATE_TOL
    return {
        **result,
        "max_loss_rel_diff": loss_diff,
        "update_rel_diff": update_diff,
        "tolerances": {"loss": LOSS_TOL, "update": UPDATE_TOL},
        "speedup": result["eager"]["ms_per_step"] / result["graphed"]["ms_per_step"],
        "ok": ok,
        "verdict": "replays match eager steps" if ok else "replays and eager steps disagree",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the verdict here too")
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("capture_probe: needs a CUDA GPU", file=sys.stderr)
        return 2
    result = probe(args.steps)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
