"""A checkpoint in a foreign layout made into a verified fastrft weights file in the cache.

The file (``CACHE/weights/NAME.safetensors``) is a ``Normalized`` model's state dict, the
backbone's tensors under timm's names and the model's mean/std beside them, so
``model.name=MODEL model.weights=FILE`` fine-tunes from it (a fresh head for the new task)
and a mismatched normalisation is refused. It is written under a temporary name, loaded
back through ``build_model(..., weights=...)``, checked on the shipped photos where the
model has ImageNet's classes, and renamed into place only then: a file in the cache has
passed, and one that fails leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from safetensors.torch import save_file
from timm.models import get_pretrained_cfg_value

from fastrft.atomic import atomic_path
from fastrft.models import MODELS, Normalized, build_model, check_model_name, read_state_dict

from .layouts import LAYOUTS
from .photos import IMAGENET_CLASSES, Answer, check_answers, classify
from .registry import CHECKPOINTS, cached_file, packaged, photo_folder


@dataclass(frozen=True)
class Imported:
    path: Path
    model: str
    """The timm model the file holds the weights of."""
    answers: list[Answer] | None
    """The photo check's answers; None where it did not run (a reused file, a model without
    ImageNet's classes)."""
    reused: bool


def imported_weights(name: str, cache_dir: Path, console: Console) -> Path:
    """The verified weights file of the packaged checkpoint ``name`` (fastrft.weights.registry)
    in ``cache_dir``, imported first where it is not there yet. MissingDependency, with the
    line that installs it, where its package is not installed."""
    return import_packaged(name, cache_dir, console).path


def import_packaged(name: str, cache_dir: Path, console: Console, force: bool = False) -> Imported:
    """``name``'s file in the cache: reused where present (it passed its check when it was
    written) unless ``force``, else imported from its installed package and verified."""
    entry = packaged(name)
    dest = cached_file(cache_dir, name)
    if dest.exists() and not force:
        console.print(
            f"reusing {dest} (verified when imported; `fastrft weights import {name} --force` "
            "imports it again)"
        )
        return Imported(dest, entry.model, None, reused=True)
    source = entry.source()
    photo_folder()  # before the work: the check needs scikit-image
    origin = f"{entry.package} {entry.installed()}: {entry.file}"
    answers = import_file(source, entry.layout, entry.model, dest, console, origin)
    return Imported(dest, entry.model, answers, reused=False)


def import_local(
    file: Path,
    layout: str,
    model: str,
    name: str,
    cache_dir: Path,
    console: Console,
    force: bool = False,
) -> Imported:
    """The local checkpoint ``file`` imported into the cache as ``name``. An existing file of
    that name is replaced only with ``force``: it may have come from another file."""
    if name in CHECKPOINTS:
        raise ValueError(f"{name!r} is a packaged checkpoint's name: choose another name")
    dest = cached_file(cache_dir, name)
    if dest.exists() and not force:
        raise ValueError(f"{dest} exists: pass --force to replace it, or choose another --name")
    if not Path(file).is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist")
    answers = import_file(Path(file), layout, model, dest, console)
    return Imported(dest, model, answers, reused=False)


def import_file(
    source: Path,
    layout: str,
    model: str,
    dest: Path,
    console: Console,
    origin: str | None = None,
) -> list[Answer] | None:
    """Map the checkpoint ``source``, in ``layout``, onto the timm model ``model`` and write it
    to ``dest``, verified (see the module's doc); ``origin`` describes the source in the
    file's metadata (default: its path). The photo check's answers, None where the model
    does not have ImageNet's classes (then only the load is checked)."""
    target = _mapped(Path(source), layout, model, console)
    state = {k: v.detach().contiguous() for k, v in target.state_dict().items()}
    metadata = {"model": model, "layout": layout, "source": origin or str(source)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest, keep_suffix=True) as staged:
        save_file(state, staged, metadata=metadata)
        answers = _verify(staged, model, target.backbone.num_classes, console)
    return answers


def _mapped(source: Path, layout: str, model: str, console: Console) -> Normalized:
    """timm's ``model``, wrapped as fastrft builds it, its classifier as the model's pretrained
    config has it, holding ``source``'s tensors."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    check_model_name(model)
    if model in MODELS:
        raise ValueError(
            f"{model!r} is a fastrft model, whose files are in fastrft's layout already: "
            "pass model.weights=PATH, or name a timm model"
        )
    target = build_model(model, get_pretrained_cfg_value(model, "num_classes") or IMAGENET_CLASSES)
    theirs = read_state_dict(source)
    console.print(f"mapping {source} ({layout}) onto {model}")
    try:
        mapped = LAYOUTS[layout].map(theirs, target.backbone.state_dict())
    except ValueError as err:
        raise ValueError(f"{source} does not map onto {model} as {layout}: {err}") from err
    target.backbone.load_state_dict(mapped)
    return target


def _verify(path: Path, model: str, classes: int, console: Console) -> list[Answer] | None:
    """Load ``path`` as training will (fastrft's builder, the classifier kept), then the photo
    check where the classes are ImageNet's."""
    loaded = build_model(model, classes, weights=path)
    if classes != IMAGENET_CLASSES:
        console.print(f"no photo check: {model} has {classes} classes, not ImageNet's")
        return None
    answers = classify(loaded)
    check_answers(
        answers,
        f"{model} from this file",
        f"The cache is left as it was: is the file {model}'s ImageNet checkpoint, in this layout?",
    )
    return answers
