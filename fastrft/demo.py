"""A short working example of the attack library, offline on a CPU in seconds.

    python -m fastrft.demo [--samples 512] [--steps 10]

Trains a small non-robust CNN on a generated task, then attacks it with FGSM-RS, PGD and
APGD (CE and DLR) at several l_inf budgets and prints robust accuracy and attack speed.
(The robust fine-tuning demo, which this will become, builds on the training engine.)
"""

from __future__ import annotations

import argparse
import time

import torch

from fastrft.attacks import apgd, fgsm, pgd
from fastrft.toy import TinyCNN, accuracy, toy_images, train_toy

BUDGETS = (1, 2, 4, 8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fastrft.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=512, help="images attacked (default 512)")
    parser.add_argument("--steps", type=int, default=10, help="PGD/APGD steps (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, model and attacks")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.steps < 1:
        parser.error("--samples and --steps must be at least 1")

    torch.manual_seed(args.seed)
    x, y = toy_images(2048 + args.samples, seed=args.seed)
    print("training a small non-robust CNN on a generated 10-class task ...", flush=True)
    model = train_toy(TinyCNN(), x[:2048], y[:2048], epochs=8, seed=args.seed)
    x, y = x[2048:], y[2048:]
    print(f"clean accuracy on {len(x)} held-out images: {accuracy(model, x, y):.1%}\n")

    attacks = {
        "FGSM-RS": lambda e: fgsm(model, x, y, e),
        f"PGD-{args.steps}": lambda e: pgd(model, x, y, e, steps=args.steps),
        f"APGD-CE-{args.steps}": lambda e: apgd(model, x, y, e, steps=args.steps),
        f"APGD-DLR-{args.steps}": lambda e: apgd(model, x, y, e, steps=args.steps, loss="dlr"),
    }
    for attack in attacks.values():  # warm-up, so the first row's speed is not penalised
        attack(BUDGETS[0] / 255)
    header = f"{'attack':<14}" + "".join(f"{f'{b}/255':>9}" for b in BUDGETS) + f"{'img/s':>10}"
    print("robust accuracy under l_inf attacks\n" + header + "\n" + "-" * len(header))
    for name, attack in attacks.items():
        seconds, cells = 0.0, []
        for b in BUDGETS:
            start = time.perf_counter()
            x_adv = attack(b / 255)
            seconds += time.perf_counter() - start
            cells.append(accuracy(model, x_adv, y))
        rate = len(BUDGETS) * len(x) / seconds
        print(f"{name:<14}" + "".join(f"{a:>9.1%}" for a in cells) + f"{rate:>10.0f}")
    print("\nOn a GPU the same calls run on fused Triton kernels; see README.md.")


if __name__ == "__main__":
    main()
