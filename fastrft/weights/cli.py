"""`fastrft weights list` and `fastrft weights import`: the options are read before torch
loads, so --help and a bad option answer at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastrft.paths import default_cache_dir

from .layouts import LAYOUTS
from .registry import CHECKPOINTS, cached_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastrft weights",
        description="Real pretrained weights, offline: import a checkpoint that a pip package "
        "ships, or a local file, in another library's layout, into CACHE/weights/NAME."
        "safetensors, checked on photos that ship with scikit-image; then fine-tune from it "
        "with model.name=MODEL model.weights=FILE.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="the cache folder (default $FASTRFT_CACHE or ~/.cache/fastrft)",
    )
    sub.add_parser(
        "list",
        parents=[cache],
        help="the packaged checkpoints: installed? imported?",
        description="The checkpoints `fastrft weights import NAME` knows, whether their "
        "package is installed and whether they are in the cache; and the layouts --file reads.",
    )
    i = sub.add_parser(
        "import",
        parents=[cache],
        help="import a packaged checkpoint (NAME) or a local file (--file)",
        description="Map a checkpoint onto its timm model (each tensor's shape and name, in "
        "order), write CACHE/weights/NAME.safetensors and verify it: it loads through "
        "fastrft's model builder and, for a model with ImageNet's 1000 classes, names the "
        "class of each of scikit-image's photos of a cat, an espresso and a camera on a "
        "tripod (top-1). A file that fails is not kept. An imported file is reused unless "
        "--force.",
    )
    i.add_argument(
        "name",
        nargs="?",
        help=f"a packaged checkpoint: {', '.join(CHECKPOINTS)} (see `fastrft weights list`)",
    )
    i.add_argument("--force", action="store_true", help="import again over a file in the cache")
    f = i.add_argument_group("a local file instead of a package")
    f.add_argument("--file", type=Path, help="a checkpoint (.pth, .pt or .safetensors)")
    f.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        help="its key layout: " + "; ".join(f"{k}: {v.about}" for k, v in LAYOUTS.items()),
    )
    f.add_argument("--model", help="the timm model it holds the weights of")
    f.add_argument("--name", dest="as_name", help="its name in the cache (default: the file's)")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    if args.action == "list":
        _list(cache_dir)
        return
    if args.file is None:
        if args.name is None:
            parser.error("import: name a packaged checkpoint, or pass --file PATH")
        if args.layout or args.model or args.as_name:
            parser.error("import: --layout, --model and --name go with --file")
    elif args.name is not None or not (args.layout and args.model):
        parser.error("import --file: give --layout and --model, and no packaged NAME")
    _import(args, cache_dir)


def _list(cache_dir: Path) -> None:
    for entry in CHECKPOINTS.values():
        version = entry.installed()
        cached = cached_file(cache_dir, entry.name)
        print(f"{entry.name}: {entry.model}, from {entry.package}")
        print(f"  {f'installed ({version})' if version else f'not installed: {entry.install}'}")
        print(f"  {f'imported: {cached}' if cached.exists() else 'not imported yet'}")
    print("layouts for --file: " + "; ".join(f"{k}: {v.about}" for k, v in LAYOUTS.items()))


def _import(args: argparse.Namespace, cache_dir: Path) -> None:
    from rich.console import Console

    from .importer import import_local, import_packaged

    console = Console(stderr=True, soft_wrap=True)
    if args.file is None:
        result = import_packaged(args.name, cache_dir, console, force=args.force)
    else:
        name = args.as_name or args.file.stem
        result = import_local(
            args.file, args.layout, args.model, name, cache_dir, console, args.force
        )
    print(f"{'reused' if result.reused else 'imported and verified'}: {result.path}")
    for a in result.answers or ():
        print(f"  {a.photo.file:<12} {a.label} ({a.probability:.1%})")
    print(f"fine-tune from it: model.name={result.model} model.weights={result.path}")
