"""Sweep the launch parameters (BLOCK, num_warps) of the fused kernels on a GPU.

    python benchmarks/tune_launch.py [--batch 128] [--size 224] [--out DIR]

Each op is timed as a CUDA-graph replay (triton.testing.do_bench_cudagraph), so the time is
the kernels' alone, without the Python wrapper: what a captured attack pays. The block size
chosen by kernels/common.flat_launch is patched for the sweep, in every kernel module that
uses it. GB/s counts the minimal bytes (each input read once, each output written once).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench_cudagraph

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.runner import environment

# the modules, not the ops of the same names that fastrft.kernels exports
common, linf_step, l2_step, apgd_update, random_start = (
    importlib.import_module(f"fastrft.kernels.{m}")
    for m in ("common", "linf_step", "l2_step", "apgd_update", "random_start")
)
MODULES = (common, linf_step, l2_step, apgd_update, random_start)
CONFIGS = [(b, w) for b in (1024, 2048, 4096, 8192) for w in (4, 8, 16) if b // (32 * w) >= 4]


def ops(n: int, size: int, dtype: torch.dtype) -> dict[str, tuple[callable, int]]:
    shape = (n, 3, size, size)
    x = torch.rand(shape, device="cuda").to(dtype)
    xa = (x + 0.01 * torch.randn_like(x, dtype=torch.float32)).clamp(0, 1).to(dtype)
    xp, g = xa.clone(), torch.randn(shape, device="cuda").to(dtype)
    out = torch.empty_like(x)
    eps = torch.full((n,), 8 / 255, device="cuda")
    eta, seed = 2 * eps, torch.tensor([1234], device="cuda")
    b = x.numel() * x.element_size()
    return {
        "linf_step": (
            lambda: linf_step.linf_step(xa, g, x, eps, eta, out=out, backend="triton"),
            4 * b,
        ),
        "apgd_update_linf": (
            lambda: apgd_update.apgd_update_(
                xa, xp, g, x, eps, eta, 0.75, "linf", backend="triton"
            ),
            6 * b,
        ),
        "random_start_linf": (
            lambda: random_start.random_start(x, eps, "linf", seed=seed, out=out, backend="triton"),
            2 * b,
        ),
        "l2_step": (lambda: l2_step.l2_step(xa, g, x, eps, eta, out=out, backend="triton"), 4 * b),
        "random_start_l2": (
            lambda: random_start.random_start(x, eps, "l2", seed=seed, out=out, backend="triton"),
            2 * b,
        ),
    }


def patch(block: int, warps: int) -> None:
    for mod in MODULES:
        mod.flat_launch = lambda m, _b=block, _w=warps: (min(_b, triton.next_power_of_2(m)), _w)


def restore(original) -> None:
    for mod in MODULES:
        mod.flat_launch = original


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--out", type=Path, default=None, help="write tune-launch.json here")
    args = p.parse_args()
    original = common.flat_launch
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for name, (fn, nbytes) in ops(args.batch, args.size, dtype).items():
            for config in [None, *CONFIGS]:
                if config is None:
                    restore(original)
                    label = "default"
                else:
                    patch(*config)
                    label = "{}/{}".format(*config)
                fn()
                torch.cuda.synchronize()
                ms = do_bench_cudagraph(fn, rep=50, return_mode="median")
                rows.append(
                    {
                        "op": name,
                        "dtype": str(dtype).split(".")[-1],
                        "config": label,
                        "ms": ms,
                        "gbps": nbytes / ms / 1e6,
                    }
                )
                print(
                    f"{name:18} {rows[-1]['dtype']:9} {label:>9} {ms:8.4f} ms "
                    f"{rows[-1]['gbps']:7.0f} GB/s",
                    flush=True,
                )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tune-launch.json").write_text(
            json.dumps({"environment": environment(torch.device("cuda")), "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
