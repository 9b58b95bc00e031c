"""Loader throughput: images/s of the FFCV and in-memory loaders at 32 and 224 pixels.

    python benchmarks/loaders.py [--out DIR] [--smoke]

Random uint8 images (never constant) are written to .beton files (raw and JPEG) and held in
memory; each loader then serves training epochs (shuffled, augmented on the device) and the
time per epoch, after one warm-up epoch (FFCV compiles its pipeline with numba), gives
images/s. FFCV rows are repeated for each worker count. --smoke uses a few hundred small
images so CI can run it on two CPU cores; its numbers only show that the script works.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.runner import environment
from fastrft.data import Augment, InMemoryLoader
from fastrft.data.ffcv_loader import ffcv_available


def _images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 10, n)


def _epoch_rate(loader, epochs: int) -> float:
    """Images/s over ``epochs`` timed epochs after one warm-up epoch."""
    for _ in loader:  # warm-up: numba compilation, allocator, caches
        pass
    seen, start = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        loader.set_epoch(epoch)
        for x, _ in loader:
            seen += len(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def run(
    sizes: list[int], n: int, batch: int, workers: list[int], epochs: int, device: torch.device
) -> list[dict]:
    rows = []
    augment = Augment()
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            images, labels = _images(n, size)
            memory = InMemoryLoader(
                torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                torch.from_numpy(labels),
                batch,
                train=True,
                device=device,
                augment=augment,
            )
            rows.append(
                {
                    "loader": "in-memory",
                    "size": size,
                    "mode": "raw",
                    "workers": 0,
                    "images_per_s": _epoch_rate(memory, epochs),
                }
            )
            if not ffcv_available():
                continue
            from fastrft.data.convert import convert
            from fastrft.data.ffcv_loader import FfcvLoader

            np.savez(Path(tmp) / f"d{size}.npz", images=images, labels=labels)
            for mode in ("raw", "jpg"):
                paths = convert(
                    Path(tmp) / f"d{size}.npz",
                    Path(tmp) / f"d{size}-{mode}",
                    mode=mode,
                    val_fraction=0.01,
                    progress=False,
                )
                for w in workers:
                    loader = FfcvLoader(
                        paths["train"],
                        batch,
                        train=True,
                        device=device,
                        img_size=size,
                        augment=augment,
                        workers=w,
                    )
                    rows.append(
                        {
                            "loader": "ffcv",
                            "size": size,
                            "mode": mode,
                            "workers": w,
                            "images_per_s": _epoch_rate(loader, epochs),
                        }
                    )
            for row in rows[-1 - 2 * len(workers) :]:
                print(
                    f"{row['loader']:>9} {row['size']:>4}px {row['mode']:>4} "
                    f"workers {row['workers']}: {row['images_per_s']:9.0f} img/s",
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write loaders-<device>.json/.md here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script only")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        sizes, n, batch, workers, epochs = [16, 32], 256, 64, [1, 2], 1
    else:
        sizes, n, batch, workers, epochs = [32, 224], 8192, 256, args.workers, 3
    rows = run(sizes, n, batch, workers, epochs, device)
    if not ffcv_available():
        print("ffcv is not installed: in-memory rows only", file=sys.stderr)
    report = {
        "environment": environment(device),
        "smoke": args.smoke,
        "images": n,
        "batch": batch,
        "rows": rows,
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "loaders-" + ("cpu-smoke" if args.smoke else device.type)
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
        lines = [
            f"# Loader throughput ({report['environment']['device']})",
            "",
            f"- {n} images, batch {batch}, train epochs with augmentation on the device; "
            f"command: `{report['environment']['command']}`",
            "",
            "| loader | size | storage | workers | images/s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['loader']} | {r['size']} | {r['mode']} | {r['workers']} | "
            f"{r['images_per_s']:.0f} |"
            for r in rows
        ]
        (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
