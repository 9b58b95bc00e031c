"""`fastrft bench`: throughput of a robust training step, rung by rung, against the limit;
or (--mode attack) of an attack alone, against torchattacks and AutoAttack.

    fastrft bench --preset resnet50                  # the ladder, the limit (GPU)
    fastrft bench --preset paper                     # + the time a paper run would take
    fastrft bench --model vit_base_patch16_224 -b 128 --attack pgd --steps 10
    fastrft bench --mode attack --preset resnet50 --steps 10 -b 256
    fastrft bench --preset tiny --no-compile         # seconds on a CPU
    fastrft bench ... --json out.json --csv out.csv --compare old.json

Timing: warm-up calls first (compilation and graph capture happen there and are reported
as warm-up seconds), then --repeats repeats of --iters back-to-back calls (on a GPU without
--iters, as many calls up to 10 as fill about a second), timed with CUDA events (host clock
on a CPU); the median and the 20/80% quantiles over repeats. Inputs are random pixels. On
NVIDIA GPUs, NVML gives power, energy per image, SM clock and utilisation. Each result checks
the preset's targets (or --target-*) and says by how much each is met or missed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastrft import attack_registry as attacks
from fastrft.cli import fraction_arg

from .presets import PRESETS

AMP_NAMES = ("bf16", "fp16")  # the keys of cli.AMP_DTYPES, named here without torch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        choices=sorted(PRESETS),
        help="a named workload (explicit flags override it); "
        "default: resnet50 on a GPU, tiny on a CPU",
    )
    w = p.add_argument_group("workload")
    w.add_argument(
        "--model", help="any timm model name, or a fastrft registry name (tiny_cnn, small_cnn)"
    )
    w.add_argument("--weights", help="a local weights file for the model (default: random init)")
    w.add_argument("--img-size", type=int, help="input resolution (pixels)")
    w.add_argument("-b", "--batch-size", type=int, help="images per step")
    w.add_argument("--num-classes", type=int, help="classifier outputs (default 1000)")
    w.add_argument("--attack", choices=attacks.names("training"), help=f"default {attacks.DEFAULT}")
    w.add_argument("--steps", type=int, help="attack steps (default 7)")
    w.add_argument("--eps", type=fraction_arg, help="budget, e.g. 4/255 (default)")
    w.add_argument("--norm", choices=attacks.NORMS, help="threat model (default linf)")
    w.add_argument(
        "--objective", choices=("madry", "trades"), help="training objective (default madry)"
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
        "targets (recorded with the result, never enforced; the preset's unless given)"
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
    r = p.add_argument_group("projection of a whole run")
    r.add_argument("--images", type=int, help="training images per epoch (preset paper: 6,667)")
    r.add_argument("--epochs", type=int, help="epochs (preset paper: 50)")
    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=int, help="warm-up calls (default 3 on a GPU, 1 on a CPU)")
    t.add_argument(
        "--iters", type=int, help="calls per timed repeat (default 10 on a GPU, 2 on a CPU)"
    )
    t.add_argument("--repeats", type=int, help="timed repeats (default 5 on a GPU, 3 on a CPU)")
    t.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    t.add_argument("--seed", type=int, default=0, help="seed of the model and the random batch")
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
    args = parser().parse_args(argv)
    from .cli import run

    return run(args)
