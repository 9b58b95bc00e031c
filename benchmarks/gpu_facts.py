"""The facts a GPU run's numbers depend on, as JSON on stdout: versions, the GPU, the float32
modes the fp32 baseline runs in, and the torch features the whole-step graph relies on.

    python -m benchmarks.gpu_facts [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch._dynamo

from fastrft.bench.environment import environment


def facts() -> dict[str, object]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        **environment(device),
        # the fp32 baseline's convolutions run TF32 when cuDNN may: that caps ResNet-50's
        # ratio over it near 4x; its matmuls stay fp32 unless this is on
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        # fastrft.engine.graphs redirects stale autograd streams with it where torch has it
        "set_override_stale_capture_stream": hasattr(
            torch.autograd.graph, "set_override_stale_capture_stream"
        ),
        "dynamo_recompile_limit": torch._dynamo.config.recompile_limit,
        "capability": list(torch.cuda.get_device_capability()) if device.type == "cuda" else None,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="The facts a GPU run's numbers depend on.")
    p.add_argument("--json", type=Path, help="write them here too")
    text = json.dumps(facts(), indent=2)
    print(text)
    if (path := p.parse_args().json) is not None:
        path.write_text(text + "\n")
