"""The speed levers of a run, resolved for its device: "auto" means on where it helps."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from fastrft.config import SpeedConfig

AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


@dataclass(frozen=True)
class Speed:
    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    graph_step: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def describe(self) -> str:
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.amp]
        levers = ("channels_last", "compile", "cuda_graphs", "graph_step")
        on = [k for k in levers if getattr(self, k)]
        return f"{self.device.type} {amp}" + (" + " + ", ".join(on) if on else "")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``dtype``'s autocast on ``device``; None: none (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def resolve_speed(cfg: SpeedConfig, device: torch.device) -> Speed:
    cuda = device.type == "cuda"

    def flag(value: str, default: bool) -> bool:
        return default if value == "auto" else value == "true"

    amp = AMP[cfg.amp] if cfg.amp != "auto" else (torch.bfloat16 if cuda else None)
    graphs = flag(cfg.cuda_graphs, cuda)
    if graphs and not cuda:
        raise ValueError("speed.cuda_graphs: CUDA graphs need a CUDA device; set it to auto")
    graph_step = flag(cfg.graph_step, False)  # auto: off until a GPU run has checked it
    if graph_step and not graphs:
        raise ValueError(
            "speed.graph_step: capturing the whole step needs speed.cuda_graphs on (and a CUDA "
            "device); set speed.graph_step=false"
        )
    return Speed(
        device, amp, flag(cfg.channels_last, cuda), flag(cfg.compile, cuda), graphs, graph_step
    )
