"""Run under torchrun by test_ffcv_loader: each rank records the labels its FFCV training
loader hands it in two epochs (the test's .beton has label i on image i)."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fastrft.data.ffcv_loader import FfcvLoader


def main(path: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    loader = FfcvLoader(
        path,
        4,
        train=True,
        device=torch.device("cpu"),
        img_size=16,
        seed=5,
        rank=rank,
        world_size=world,
        workers=1,
        crop_scale=(1.0, 1.0),
    )
    seen = {}
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        seen[epoch] = [int(v) for _, y in loader for v in y]
    Path(out, f"rank{rank}.json").write_text(json.dumps({"len": len(loader), "seen": seen}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
