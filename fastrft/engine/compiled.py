"""The compiled model and its variants. Dynamo compiles a graph per variant it sees (train mode;
the attack, parameters frozen and a gradient on the input; no-grad passes; each batch shape)
and past torch._dynamo.config's recompile limit (8 a frame) runs that frame eagerly, with only
a log line. So the model is compiled for static shapes (validation pads its last batch to the
full size) and the run counts its compiled graphs, and says once when the count reaches the
limit.
"""

from __future__ import annotations

import warnings

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters


def compile_model(model: nn.Module) -> nn.Module:
    """``model`` compiled for static shapes: a second batch size is one more variant, not a
    dynamic-shape graph beside the static ones (Dynamo's automatic dynamic)."""
    return torch.compile(model, dynamic=False)


def compile_count() -> int:
    """Graphs Dynamo has compiled in this process, every frame and variant (graph breaks
    included): counters["stats"]["unique_graphs"], present from torch 2.0 through 2.14."""
    return counters["stats"]["unique_graphs"]


def recompile_limit() -> int:
    """Dynamo's variants per frame: config.recompile_limit, called cache_size_limit before
    torch 2.7 (the old name is still an alias)."""
    config = torch._dynamo.config
    limit = getattr(config, "recompile_limit", None)
    return config.cache_size_limit if limit is None else limit


class CompileCounter:
    """The graphs compiled since it was made; ``count()`` warns, once, when they reach the
    recompile limit (the compiled model is one frame: past the limit it runs eagerly)."""

    def __init__(self) -> None:
        self.start = compile_count()
        self.warned = False

    def count(self) -> int:
        n = compile_count() - self.start
        if n >= recompile_limit() and not self.warned:
            self.warned = True
            warnings.warn(
                f"torch.compile: {n} graphs compiled, at Dynamo's recompile limit "
                f"({recompile_limit()}); past it the model runs eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
        return n
