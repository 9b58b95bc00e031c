"""The `fastrft` command: train, eval, data, bench, sweep, report, demo, weights.

fastrft train CONFIG [CONFIG ...] [key=value ...]
fastrft eval RUN_DIR_OR_CHECKPOINT [--eps-max 8/255] [--attack apgd|pgd|autoattack]
             [--precision fp32|bf16] [--strategy all|bisect]
                                                  writes RUN_DIR/eval.json, or NAME.eval.json
                                                  beside a checkpoint file NAME.pt
torchrun --nproc-per-node N -m fastrft eval RUN   the same numbers, shared by N processes
fastrft demo
fastrft weights import efficientnet-lite0    ImageNet weights from an installed package, verified
fastrft train --help-config      every config key, its default and what it does
fastrft --version

Commands with many options of their own (bench, sweep, report, demo, weights) own their parsers:
each lives in its module as `main(argv)`, imported only when that command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from fastrft import attack_registry as attacks
from fastrft.budgets import CURVE_STRATEGIES, fraction_arg
from fastrft.datasets import DATASETS, IDX_DATASETS
from fastrft.errors import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_DIVERGED, EXIT_INTERRUPTED

RESUMES = "interrupted: rerun the same command to resume from the last checkpoint"
# what an interruption leaves: only runs (train, the sweep's and the demo's) can resume
INTERRUPTED = {
    "train": RESUMES,
    "sweep": RESUMES,
    "demo": RESUMES,
    "eval": "interrupted: nothing was written (a rerun evaluates from the start)",
    "data": "interrupted: no output was finished (files are renamed only when complete)",
    "report": "interrupted: the report may be incomplete; rerun it",
    "weights": "interrupted: the cache is as it was (a file enters it only once verified)",
}
STOPPED = "interrupted: nothing more was written"

# command -> (module whose main(argv) runs it, one-line help)
DELEGATED = {
    "bench": ("fastrft.bench.options", "throughput of a robust training step or an attack"),
    "sweep": ("fastrft.sweep.cli", "run a grid of training runs, resumably"),
    "report": ("fastrft.report.cli", "tables, statistics and plots from run directories"),
    "demo": ("fastrft.demo_options", "the offline robust fine-tuning demo"),
    "weights": ("fastrft.weights.cli", "import real pretrained weights, offline, verified"),
}


def version() -> str:
    """The installed distribution's version; the package's own when fastrft runs from a
    source tree that was never installed (PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("fastrft")
    except PackageNotFoundError:
        from fastrft import __version__

        return __version__


class _PrintVersion(argparse.Action):
    """--version, looked up only when asked for: reading the package metadata takes a
    noticeable fraction of a second."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"fastrft {version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft",
        description="Fast robust fine-tuning of "
        "pretrained image classifiers, with Epsilon-Scheduling.",
    )
    p.add_argument("--version", action=_PrintVersion, help="print fastrft's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="fine-tune a model (resumes an existing run directory)",
        description="Train from YAML configs merged in order, then key=value "
        "overrides (dotted keys, e.g. attack.eps=8/255 schedule.name=fix). "
        "Rerunning the same command on the same out_dir resumes from its last "
        "good checkpoint. Under torchrun it trains with DDP. See --help-config.",
    )
    t.add_argument(
        "items",
        nargs="*",
        metavar="CONFIG|key=value",
        help="YAML config files and key=value overrides",
    )
    t.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its default and meaning, then exit",
    )
    t.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config and exit without training",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")

    e = sub.add_parser(
        "eval",
        help="evaluate a saved model: clean, robust, E.adv",
        description="Accuracy under attack on the run's validation split over budgets 0, "
        "step, ..., eps-max, expected robustness up to the run's attack.eps, as training "
        "computed them for results.json: each option defaults to the run's eval.* key, the "
        "random starts are keyed by the run's seed and each image's index, so the same "
        "checkpoint gives the same numbers. Writes RUN_DIR/eval.json for a run directory, "
        "NAME.eval.json beside a checkpoint file NAME.pt (atomically; see --out), checked "
        "before evaluating. Under "
        "`torchrun --nproc-per-node N -m fastrft eval ...` each process (GPU) evaluates a "
        "contiguous shard of the split and the counts are summed: the same numbers as one "
        "process, each image's random starts being keyed by its index.",
    )
    e.add_argument("checkpoint", help="a run directory or a checkpoint file (.pt)")
    e.add_argument(
        "--eps-max",
        type=fraction_arg,
        default=None,
        help="largest budget of the curve, >= the run's attack.eps (default: eval.eps_max)",
    )
    e.add_argument(
        "--grid-step",
        type=fraction_arg,
        default=None,
        help="spacing of the budgets (default: eval.grid_step, by default 1/255 for an l_inf "
        "attack.eps in whole 255ths, else attack.eps/8)",
    )
    e.add_argument(
        "--attack",
        choices=attacks.names("checkpoint"),
        default=None,
        help=f"{attacks.describe('checkpoint')}; default: eval.attack",
    )
    e.add_argument("--steps", type=int, default=None, help="attack steps (default: eval.steps)")
    e.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="fp32 or bf16 autocast (default: eval.precision, fp32 unless the run set it)",
    )
    e.add_argument(
        "--strategy",
        choices=CURVE_STRATEGIES,
        default=None,
        help="bisect: bisect each image's smallest broken budget, ceil(log2(G+1)) attacks "
        "instead of G; all: attack every budget (default: eval.strategy, bisect unless the run "
        "set it)",
    )
    e.add_argument(
        "--seed",
        type=int,
        default=None,
        help="key of the random starts (default: eval.seed, else the run's seed); another "
        "seed shows how much the numbers owe to the starts",
    )
    e.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the results (default: RUN_DIR/eval.json, or NAME.eval.json "
        "beside the checkpoint NAME.pt)",
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides for evaluation, e.g. data.root=PATH device=cpu",
    )

    d = sub.add_parser("data", help="convert datasets to FFCV .beton files, inspect them")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    c = dsub.add_parser(
        "convert",
        help="write OUT.train.beton and OUT.val.beton from a dataset",
        description="Convert an ImageFolder tree (ROOT/train/<class>, ROOT/val/<class>, or "
        "ROOT/<class> split by --val-fraction), a CIFAR-10/100 python-batch folder, a folder "
        "of IDX files (MNIST, Fashion-MNIST, EMNIST) or an .npz file into FFCV files "
        "OUT.train.beton and OUT.val.beton; train with data.source=beton "
        "data.root=OUT.",
    )
    c.add_argument("src", help="the dataset: a folder or an .npz file")
    c.add_argument("out", help="the output stem: writes OUT.train.beton and OUT.val.beton")
    c.add_argument(
        "--source",
        choices=("auto", "imagefolder", "cifar", "npz", "idx", *IDX_DATASETS, *DATASETS),
        default="auto",
        help="the source's layout (default: detected from the path); idx: a folder of the "
        "four MNIST-style IDX files (train-images-idx3-ubyte[.gz], ..., t10k-... as val); a "
        "dataset name reads its authors' own layout: "
        + "; ".join(f"{k}: {v.layout}" for k, v in IDX_DATASETS.items())
        + "; "
        + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()),
    )
    c.add_argument(
        "--mode",
        choices=("raw", "jpg"),
        default="raw",
        help="raw pixels (exact, larger) or JPEG (smaller, lossy); default raw",
    )
    c.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    c.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="resize so the longer side is at most this many pixels",
    )
    c.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="held-out share for sources without a validation split (default 0.2)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of that split (default 0)")
    c.add_argument("--workers", type=int, default=1, help="writer processes (default 1)")
    c.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip unreadable images (and count them) instead of stopping",
    )
    i = dsub.add_parser("info", help="what a .beton file holds")
    i.add_argument("file", help="a .beton file")

    for name, (_, summary) in DELEGATED.items():
        sub.add_parser(name, help=summary, add_help=False)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        _run(argv[0], lambda: module.main(argv[1:]))
        return
    parser = _parser()
    # configs and key=value overrides may come before or after the flags
    args, rest = parser.parse_known_args(argv)
    positional = {"train": "items", "eval": "overrides"}.get(args.command)
    if positional is not None:
        from fastrft.config import check_key_words

        # `epochs 3` or `--epochs 3`: the override meant, not "file not found" or "unknown flag"
        loose = {*rest, *getattr(args, positional)}
        _run(args.command, lambda: check_key_words(argv[1:], loose))
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if positional is None and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if positional is not None:
        setattr(args, positional, getattr(args, positional) + rest)
    command = {"train": _train, "eval": _eval, "data": _data}[args.command]
    _run(args.command, lambda: command(args))


def _run(name: str, command: Callable[[], int | None]) -> None:
    """Run a subcommand; bad input and interruptions become one line and an exit code.

    A command may also return a non-zero exit code itself (a sweep with failed runs)."""
    from fastrft.config import ConfigError
    from fastrft.errors import MissingDependency, TrainingDiverged
    from fastrft.locks import Busy

    try:
        code = command()
    except Busy as err:  # another process holds the folder: the same command can succeed later
        print(f"fastrft {name}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    except (ConfigError, ValueError, FileNotFoundError, MissingDependency) as err:
        print(f"fastrft {name}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingDiverged as err:
        print(f"fastrft train: stopped: {err}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED.get(name, STOPPED)}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if code:
        sys.exit(code)


def _train(args: argparse.Namespace) -> None:
    from fastrft.config import config_help, load_config, to_yaml

    if args.help_config:
        for key, default, doc in config_help():
            print(f"{key:<26} {default:<16} {doc}")
        return
    files = [i for i in args.items if "=" not in i]
    overrides = [i for i in args.items if "=" in i]
    cfg = load_config(files, overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return
    from fastrft.engine import Trainer

    Trainer(cfg, progress=not args.no_progress).fit()


def _eval(args: argparse.Namespace) -> None:
    from rich.console import Console

    from fastrft.atomic import write_json
    from fastrft.engine.distributed import launched_rank
    from fastrft.engine.evaluation import evaluate_checkpoint
    from fastrft.engine.log import counted
    from fastrft.paths import check_out_file

    path = Path(args.checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass a run directory or a checkpoint file")
    out = args.out or _eval_json(path)
    check_out_file(out, "--out")  # before the minutes of evaluation whose numbers it keeps
    unit = f"{args.attack}, budgets" if attacks.whole_set(args.attack) else "eval, batches"
    main_process = launched_rank() == 0  # under torchrun, rank 0 shows and writes
    with counted(Console(stderr=True), not args.no_progress and main_process, unit) as progress:
        results = evaluate_checkpoint(
            path,
            eps_max=args.eps_max,
            grid_step=args.grid_step,
            attack=args.attack,
            steps=args.steps,
            precision=args.precision,
            strategy=args.strategy,
            seed=args.seed,
            overrides=args.overrides,
            progress=progress,
        )
    if not main_process:
        return
    write_json(out, results)
    grid, curve = results["eps_grid"], results["accuracy_curve"]
    for eps, acc in zip(grid, curve, strict=True):
        print(f"eps {eps * 255:6.2f}/255  accuracy {acc:.2%}")
    print(
        f"clean {results['clean_acc']:.2%}  adv {results['adv_acc']:.2%}  "
        f"E.adv {results['expected_robustness']:.2%}  -> {out}"
    )
    if results["gradient_passes"] is not None:
        shared = f" in {results['processes']} processes" if results["processes"] > 1 else ""
        print(
            f"strategy {results['strategy']}: {results['attack_calls']} attack calls, "
            f"{results['gradient_passes']} gradient passes{shared}"
        )


def _eval_json(path: Path) -> Path:
    """Where eval writes by default: RUN_DIR/eval.json, or NAME.eval.json beside a checkpoint
    NAME.pt (one eval.json for a folder of checkpoints would keep only the last one's)."""
    return path / "eval.json" if path.is_dir() else path.with_name(f"{path.stem}.eval.json")


def _data(args: argparse.Namespace) -> None:
    if args.data_command == "info":
        from fastrft.data.convert import beton_info

        info = beton_info(args.file)
        for key, value in vars(info).items():
            print(f"{key:<16} {value}")
        return
    from fastrft.data.convert import convert

    written = convert(
        args.src,
        args.out,
        source=args.source,
        mode=args.mode,
        jpeg_quality=args.jpeg_quality,
        max_side=args.max_side,
        val_fraction=args.val_fraction,
        seed=args.seed,
        workers=args.workers,
        on_bad_image="skip" if args.skip_bad_images else "error",
    )
    for split, path in written.items():
        print(f"{split}: {path}")
