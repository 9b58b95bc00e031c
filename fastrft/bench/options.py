"""`fastrft bench`: throughput of a robust training step, rung by rung, against the limit;
or (--mode attack) of an attack alone, against torchattacks and AutoAttack.

    fastrft bench --preset resnet50                  # the ladder, the limit (GPU)
    fastrft bench --preset paper                     # + the time a paper run would take
    fastrft bench model.name=vit_base_patch16_224 data.batch_size=128 attack.name=pgd \
        attack.steps=10
    fastrft bench --mode attack --preset resnet50 attack.steps=10 data.batch_size=256
    fastrft bench --preset tiny --no-compile         # seconds on a CPU
    fastrft bench ... --json out.json --csv out.csv --compare old.json

The workload is a preset (configs/bench/NAME.yaml, or a YAML file of the same keys), then
key=value overrides, read like `fastrft train`'s configs; the flags say how to measure it.
Timing: warm-up calls first (compilation and graph capture happen there and are reported
as warm-up seconds), then --repeats repeats of --iters back-to-back calls (on a GPU without
--iters, as many calls up to 10 as fill about a second), timed with CUDA events (host clock
on a CPU); the median and the 20/80% quantiles over repeats. Inputs are random pixels. On
NVIDIA GPUs, NVML gives power, energy per image, SM clock and utilisation. Each result checks
the preset's targets (or --target-*) and says by how much each is met or missed.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .config import KEYS, preset_names

AMP_NAMES = ("bf16", "fp16")  # the keys of cli.AMP_DTYPES, named here without torch


def parser() -> argparse.ArgumentParser:
    keys = textwrap.fill(", ".join(KEYS), 88, initial_indent="  ", subsequent_indent="  ")
    p = argparse.ArgumentParser(
        prog="fastrft bench",
        description=__doc__,
        epilog=f"workload keys (key=value):\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="workload overrides, e.g. model.name=resnet18 data.img_size=32 attack.steps=10 "
        "data.batch_size=256 device=cuda:1 (the keys: below)",
    )
    p.add_argument(
        "--mode",
        choices=("train", "attack"),
        default="train",
        help="train: the lever ladder of a training step (default); "
        "attack: the attack alone, against its peers",
    )
    p.add_argument(
        "--preset",
        metavar="NAME|FILE.yaml",
        help=f"the workload: {', '.join(preset_names())} (configs/bench/), or a YAML file; "
        "default: resnet50 on a GPU, tiny on a CPU",
    )
    s = p.add_argument_group("levers")
    s.add_argument(
        "--amp-dtype",
        choices=AMP_NAMES,
        default="bf16",
        help="autocast dtype of the rungs from 1 up and of the limit (default bf16)",
    )
    s.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="attack mode's fast path: channels_last (default on)",
    )
    s.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the model for the limit, rungs 5-7 and the attack fast path "
        "(--no-compile drops rung 5 and measures the limit eager)",
    )
    s.add_argument(
        "--rungs",
        help="which rungs to run, e.g. 0-7 or 0,4,7 (default: every rung the device can run)",
    )
    s.add_argument("--no-limit", action="store_true", help="skip measuring the limit")
    s.add_argument(
        "--profile",
        action="store_true",
        help="profile the top rung: the operators its step time goes to (torch.profiler)",
    )
    g = p.add_argument_group(
        "targets (recorded with the result, never enforced; the preset's targets.MODE.* "
        "unless given)"
    )
    g.add_argument(
        "--target-speedup",
        type=float,
        metavar="X",
        help="train: top rung over rung 0; attack: fast path over AutoAttack APGD-CE",
    )
    g.add_argument(
        "--target-limit", type=float, metavar="F", help="train: top rung's fraction of the limit"
    )
    g.add_argument(
        "--target-minutes", type=float, metavar="M", help="train: projected whole RFT-fix run"
    )
    g.add_argument(
        "--target-fp32-speedup",
        type=float,
        metavar="X",
        help="attack: fastrft fp32 eager over AutoAttack APGD-CE",
    )
    g.add_argument(
        "--target-acc-gap",
        type=float,
        metavar="P",
        help="attack: most robust-accuracy points between the fast path and AutoAttack",
    )
    g.add_argument("--no-targets", action="store_true", help="check no targets at all")
    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=int, help="warm-up calls (default 3 on a GPU, 1 on a CPU)")
    t.add_argument(
        "--iters", type=int, help="calls per timed repeat (default 10 on a GPU, 2 on a CPU)"
    )
    t.add_argument("--repeats", type=int, help="timed repeats (default 5 on a GPU, 3 on a CPU)")
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, metavar="PATH", help="write the result as JSON")
    o.add_argument("--csv", type=Path, metavar="PATH", help="write the rows as CSV")
    o.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="write a short markdown results file (device, versions, command, table)",
    )
    o.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.json",
        help="show images/s against an earlier --json result",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """`fastrft bench`: the options are read before torch and the models load, so --help
    and a bad option answer at once."""
    args = parser().parse_intermixed_args(argv)
    from .cli import run

    return run(args)
