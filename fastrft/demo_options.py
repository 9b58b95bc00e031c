"""`fastrft demo`: robust fine-tuning from a non-robust pretrained backbone, offline, on a CPU.

1. Pretrain a small CNN, non-robustly, on generated stroke glyphs (cached, so the next run
   reuses it), or take a backbone given with --weights or --pretrained. With
   --preset lite0-fashion: import Google's ImageNet EfficientNet-Lite0 weights from their pip
   package instead (cached, checked on photos).
2. Fine-tune it on scikit-learn's handwritten digits (shipped with it, upscaled), or on a
   subset of Fashion-MNIST with --preset lite0-fashion, three ways with the same budget:
   standard fine-tuning (eps = 0), RFT-fix and RFT with the two-hinge Epsilon-Scheduling
   (lite0-fashion adds a control: standard fine-tuning from a random initialisation).
3. Evaluate each: clean accuracy, robust accuracy at eps_g (APGD-CE), the accuracy-vs-eps
   curve, expected robustness E.adv, and the delay time.
4. Write a report folder: report.md, accuracy_vs_eps.png, clean_accuracy.png, results.json
   and each run's own directory.

Every run goes through the training engine (`fastrft train`'s Trainer), so the same command
with another source, backbone and device is a real run, e.g. on a GPU:

    fastrft demo --source imagefolder --root data/cars --model resnet50.a1_in1k \\
        --weights resnet50.safetensors --img-size 224 --eps 4/255 --epochs 50 --device cuda

Any config key may follow as key=value (see `fastrft train --help-config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastrft.config import CONFIGS

DEFAULT_PRESET = "digits"

# option -> config key; each option left out keeps the demo's setting
OPTION_KEYS = {
    "source": "data.source",
    "root": "data.root",
    "img_size": "data.img_size",
    "epochs": "epochs",
    "eps": "attack.eps",
    "seed": "seed",
    "device": "device",
    "model": "model.name",
    "weights": "model.weights",
}


def presets() -> list[str]:
    """The demo's presets: one settings file each in configs/demo/."""
    return sorted(path.stem for path in (CONFIGS / "demo").glob("*.yaml"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="more config overrides for the three fine-tuning runs (fastrft train --help-config)",
    )
    p.add_argument(
        "--preset",
        choices=presets(),
        default=DEFAULT_PRESET,
        help="digits (default): a small CNN pretrained here on generated glyphs, fine-tuned "
        "on scikit-learn's digits, minutes; lite0-fashion: Google's ImageNet "
        "EfficientNet-Lite0, fine-tuned on Fashion-MNIST (needs the weights' package and the "
        "dataset, see README), at most 20 minutes on two CPU cores. The options below "
        "override the preset",
    )
    t = p.add_argument_group("the target task and the runs")
    t.add_argument(
        "--source",
        help="digits (the default preset's: scikit-learn's, offline), fashion_mnist "
        "(lite0-fashion's), idx, imagefolder, npz, cifar, beton, toy or a named dataset "
        "(fastrft train --help-config: data.source)",
    )
    t.add_argument("--root", help="the dataset's path, for imagefolder, npz and beton")
    t.add_argument("--img-size", type=int, help="side of the images the model sees (default 16)")
    t.add_argument("--epochs", type=int, help="epochs of each fine-tuning run (default 12)")
    t.add_argument("--eps", help="the target budget eps_g, l_inf (default 64/255)")
    t.add_argument("--seed", type=int, help="seed of data, model and attacks (default 0)")
    t.add_argument("--device", help="cpu, cuda, cuda:N or auto (default auto)")
    b = p.add_argument_group("the backbone (default: small_cnn, pretrained here and cached)")
    b.add_argument("--model", help="a fastrft registry name (small_cnn) or any timm name")
    b.add_argument("--weights", help="start from this weights file instead of pretraining")
    b.add_argument(
        "--pretrained", action="store_true", help="start from timm's hub weights (needs network)"
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder, with each run's directory inside (default runs/demo, "
        "runs/demo-quick with --quick); "
        "rerunning on it resumes, and finished runs are read back, not redone",
    )
    o.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where pretrained backbones are kept (default $FASTRFT_CACHE or ~/.cache/fastrft)",
    )
    o.add_argument(
        "--quick",
        action="store_true",
        help="a reduced demo for tests: 2 epochs, 8 px, 2 attack steps, a smaller pretraining",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's options, and key=value overrides before, between or after them."""
    return parser().parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    """`fastrft demo`: the options are read before torch loads, so --help and a bad option
    answer at once."""
    args = parse_args(argv)
    from fastrft.demo import run

    run(args)
