"""Models for robust fine-tuning: pixels in [0, 1] in, logits out, normalisation inside.

Attacks perturb pixels, so the l_inf ball and the [0, 1] box must live in pixel space; the
model therefore owns its normalisation (``Normalized``) and nobody normalises data loaders.

``build_model`` looks a name up in fastrft's registry (``MODELS``, filled by
``@register_model``) first, then in timm. Weights come from timm's hub (``pretrained=True``,
where a hub is reachable) or from a local file (``weights=PATH``), and every model gets a
fresh classifier for the new task.
"""

from __future__ import annotations

import difflib
import itertools
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.data import resolve_model_data_config
from timm.models import PretrainedCfg, clean_state_dict, get_pretrained_cfg, split_model_name_tag
from torch import Tensor, nn

from fastrft.errors import not_loadable
from fastrft.toy import TinyCNN

PARAM_GROUPS = ("backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay")

# A weight file's mean/std may differ from the model's by bfloat16 rounding, no more.
_NORM_RTOL = 2**-8


class Normalized(nn.Module):
    """``backbone((x - mean) / std)``: a classifier of pixels in [0, 1].

    ``mean`` and ``std`` are persistent buffers shaped (1, C, 1, 1), so they travel with the
    state dict, device and dtype. ``head_name`` names the classifier inside ``backbone``
    for backbones without timm's ``get_classifier()``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        head_name: str | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need the same length >= 1")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.backbone = backbone
        self.head_name = head_name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # element-wise ops keep the input's memory format (channels_last stays channels_last)
        return self.backbone((x - self.mean) / self.std)

    def get_classifier(self) -> nn.Module:
        """The classifier (head) inside ``backbone``: the declared one, else timm's."""
        if self.head_name is not None:
            return self.backbone.get_submodule(self.head_name)
        if hasattr(self.backbone, "get_classifier"):
            return self.backbone.get_classifier()
        raise ValueError(
            f"{type(self.backbone).__name__} has no get_classifier(): "
            "pass head_name='<its classifier module>' to Normalized"
        )


@dataclass(frozen=True)
class ModelSpec:
    """A model fastrft builds itself rather than through timm."""

    build: Callable[..., nn.Module]
    """``build(num_classes, img_size, **kwargs)``: a new network with a fresh classifier."""
    mean: tuple[float, ...]
    """Per-channel mean of the pixels the network expects (one value broadcasts)."""
    std: tuple[float, ...]
    """Per-channel standard deviation, as ``mean``."""
    head: str
    """Dotted name of the classifier module inside the built network."""


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, mean: Sequence[float], std: Sequence[float], head: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder ``(num_classes, img_size, **kwargs) -> nn.Module`` to
    ``MODELS`` under ``name``; fastrft's registry is searched before timm's."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = ModelSpec(build, tuple(mean), tuple(std), head)
        return build

    return add


@register_model("tiny_cnn", mean=(0.0,), std=(1.0,), head="head")
def tiny_cnn(num_classes: int, img_size: int | None = None, **kwargs: int) -> nn.Module:
    """fastrft.toy.TinyCNN. Identity normalisation (mean 0, std 1, any channel count), so a
    TinyCNN trained on raw pixels (fastrft.toy.train_toy, the demo) loads unchanged.
    ``img_size`` is ignored: global pooling takes any size."""
    return TinyCNN(classes=num_classes, **kwargs)


@register_model("small_cnn", mean=(0.5,), std=(0.25,), head="head")
def small_cnn(num_classes: int, img_size: int | None = None, width: int = 32) -> nn.Module:
    """Four conv-bn-relu blocks (width, 2 width with stride 2, 2 width, 4 width with stride
    2), global pooling, linear: the demo's CPU-sized backbone, 0.13M parameters at width
    32. ``img_size`` is ignored: global pooling takes any size."""
    widths = [3, width, 2 * width, 2 * width, 4 * width]
    blocks: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(itertools.pairwise(widths)):
        blocks += [
            nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]
    features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(OrderedDict(features=features, head=nn.Linear(4 * width, num_classes)))


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **timm_kwargs: object,
) -> Normalized:
    """A classifier of pixels in [0, 1] with a fresh ``num_classes`` head.

    ``name`` is a fastrft model (``MODELS``) or any timm name, with or without a pretrained
    tag (``vit_base_patch16_clip_224.laion2b``). ``pretrained=True`` fetches timm's weights
    (needs a reachable hub); ``weights`` loads a local file instead (see ``load_weights``).
    ``img_size`` goes to models whose input size is fixed (ViT, Swin); convolutional ones take
    any size. ``mean``/``std`` default to the model's own (timm's ``pretrained_cfg``: ImageNet's
    for most, CLIP's for CLIP models). Other keyword arguments go to the model's constructor.
    """
    if pretrained and weights is not None:
        raise ValueError("pass pretrained=True (timm's hub) or weights=PATH (a file), not both")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if name in MODELS:
        model = _build_registered(name, num_classes, pretrained, img_size, mean, std, timm_kwargs)
    else:
        model = _build_timm(name, num_classes, pretrained, img_size, mean, std, timm_kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def check_model_name(name: str) -> None:
    """ValueError, with close matches, for a name neither fastrft's registry nor timm knows
    (an unknown pretrained tag too); builds nothing."""
    if name not in MODELS:
        _timm_pretrained_cfg(name)


def _build_registered(
    name: str,
    num_classes: int,
    pretrained: bool,
    img_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    kwargs: dict[str, object],
) -> Normalized:
    spec = MODELS[name]
    if pretrained:
        raise ValueError(f"{name!r} is a fastrft model with no hub weights: pass weights=PATH")
    backbone = spec.build(num_classes, img_size, **kwargs)
    mean, std = spec.mean if mean is None else mean, spec.std if std is None else std
    return Normalized(backbone, mean, std, head_name=spec.head)


def _build_timm(
    name: str,
    num_classes: int,
    pretrained: bool,
    img_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    kwargs: dict[str, object],
) -> Normalized:
    cfg = _timm_pretrained_cfg(name)
    if img_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs = {**kwargs, "img_size": img_size}
    backbone = _create_timm(name, num_classes, pretrained, cfg, kwargs)
    data_cfg = resolve_model_data_config(backbone)
    mean = data_cfg["mean"] if mean is None else mean
    return Normalized(backbone, mean, data_cfg["std"] if std is None else std)


def _timm_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """timm's pretrained config for ``name`` (None for the rare architecture without one);
    ValueError with suggestions for a name or tag neither registry knows."""
    if not timm.is_model(name):
        raise ValueError(
            _unknown_model(
                name,
                f"neither a fastrft model ({', '.join(MODELS)}) nor a timm name "
                "(timm.list_models('*pattern*') lists them)",
            )
        )
    try:
        return get_pretrained_cfg(name)
    except RuntimeError as err:  # a known architecture with an unknown tag
        arch, tag = split_model_name_tag(name)
        why = f"timm has no tag {tag!r} for {arch} (timm.list_pretrained('{arch}.*') lists them)"
        raise ValueError(_unknown_model(name, why)) from err


def _unknown_model(name: str, why: str) -> str:
    known = [*MODELS, *timm.list_models(), *timm.list_pretrained()]
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return f"unknown model {name!r}: {why}{hint}"


def _create_timm(
    name: str,
    num_classes: int,
    pretrained: bool,
    cfg: PretrainedCfg | None,
    kwargs: dict[str, object],
) -> nn.Module:
    if not pretrained:
        return timm.create_model(name, num_classes=num_classes, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except (OSError, RuntimeError) as err:  # hub unreachable, not cached, or no weights
        where = f"huggingface.co/{cfg.hf_hub_id}" if cfg and cfg.hf_hub_id else "timm's hub"
        raise RuntimeError(
            f"could not get pretrained weights for {name!r} ({type(err).__name__}: {err}). "
            f"Without a reachable hub, download them where one is ({where}, e.g. "
            "model.safetensors) and pass weights=PATH with pretrained=False"
        ) from err


def load_weights(model: Normalized, path: str | os.PathLike[str]) -> None:
    """Load a local weight file into ``model.backbone``, keeping a fresh head where the file's
    classifier does not fit it (fine-tuning to another task).

    The file is ``.safetensors`` or a torch checkpoint (a state dict, or a dict holding one
    under "state_dict" or "model"), in timm's layout or saved from a ``Normalized`` model
    (whose mean/std must then match ``model``'s). timm's own converter for the architecture
    runs first, as for its hub weights (e.g. it resamples ViT position embeddings to another
    ``img_size`` and maps OpenAI/open_clip CLIP keys). Every key outside the classifier must
    load: FileNotFoundError or ValueError, naming the file, otherwise.
    """
    path = Path(path)
    state = read_state_dict(path)
    state, norm = _split_normalization(state)
    state = _timm_convert(state, model.backbone, path)
    state = _drop_unfit_head(state, model)
    _check_fit(state, model, path)
    _check_normalization(norm, model, path)
    model.backbone.load_state_dict(state, strict=False)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The state dict in a ``.safetensors`` file or a torch checkpoint (loaded with
    weights_only; a state dict, or a dict holding one under "state_dict" or "model"), DDP's
    "module." prefix dropped; ValueError for a file that holds none."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            obj = load_file(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the file's content is arbitrary: any parse failure lands here
        raise not_loadable(path, "fastrft checkpoint or safetensors file", err) from err
    if isinstance(obj, dict):
        obj = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} holds no state dict (name -> tensor)")
    return clean_state_dict(obj)  # drops DDP's "module." prefix


def _split_normalization(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A file saved from a Normalized model: its backbone's keys and its mean/std. A backbone's
    state dict: itself and nothing."""
    if not ({"mean", "std"} <= state.keys() and any(k.startswith("backbone.") for k in state)):
        return state, {}
    prefix = "backbone."
    backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return backbone, {"mean": state["mean"], "std": state["std"]}


def _check_normalization(norm: dict[str, Tensor], model: Normalized, path: Path) -> None:
    for key, theirs in norm.items():
        ours = getattr(model, key)
        if ours.shape != theirs.shape or not torch.allclose(
            theirs.float(), ours.float(), rtol=_NORM_RTOL, atol=0.0
        ):
            raise ValueError(
                f"weights file {path} was saved with {key} {theirs.flatten().tolist()}, the "
                f"model uses {ours.flatten().tolist()}: pass mean=/std= to build_model to match"
            )


def _timm_convert(state: dict[str, Tensor], backbone: nn.Module, path: Path) -> dict[str, Tensor]:
    """timm's converter for the backbone's architecture: by timm's convention, the module that
    defines a model defines ``checkpoint_filter_fn(state_dict, model)`` when one is needed."""
    convert = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return convert(state, backbone)
    except Exception as err:  # a converter fed another architecture's keys fails in any way
        raise ValueError(
            f"weights file {path} does not fit {type(backbone).__name__}: timm's converter "
            f"failed ({type(err).__name__}: {err})"
        ) from err


def _head_prefix(model: Normalized) -> str:
    head = model.get_classifier()
    return next(f"{n}." for n, m in model.backbone.named_modules() if m is head)


def _drop_unfit_head(state: dict[str, Tensor], model: Normalized) -> dict[str, Tensor]:
    """Without the classifier's keys that the model lacks or holds in another shape."""
    prefix, own = _head_prefix(model), model.backbone.state_dict()

    def fits(key: str) -> bool:
        return key in own and own[key].shape == state[key].shape

    return {k: v for k, v in state.items() if not k.startswith(prefix) or fits(k)}


def _check_fit(state: dict[str, Tensor], model: Normalized, path: Path) -> None:
    prefix, own = _head_prefix(model), model.backbone.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(prefix)]
    unexpected = [k for k in state if k not in own]
    resized = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:4])})"
        for what, keys in [
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", resized),
        ]
        if keys
    ]
    if problems:
        raise ValueError(
            f"weights file {path} does not fit {type(model.backbone).__name__}: "
            + "; ".join(problems)
        )


def split_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters in four groups, keyed by ``PARAM_GROUPS``: head (the classifier
    from ``model.get_classifier()``) or backbone, crossed with decay or not. No weight decay,
    as in timm's optimizer factory and the paper's code, on biases and norm parameters
    (1-d) and on what the backbone lists in ``no_weight_decay()`` (ViT's position embedding
    and class token, Swin's relative position tables: shrinking them toward 0 is no
    regularisation)."""
    if not hasattr(model, "get_classifier"):
        raise ValueError(
            f"{type(model).__name__} has no get_classifier(): use build_model, a timm model, "
            "or Normalized(..., head_name=NAME)"
        )
    head = {id(p) for p in model.get_classifier().parameters()}
    exempt = _no_weight_decay(model)
    groups: dict[str, list[nn.Parameter]] = {key: [] for key in PARAM_GROUPS}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = "head" if id(p) in head else "backbone"
            decay = p.ndim > 1 and not name.endswith(".bias") and name not in exempt
            groups[f"{part}_{'decay' if decay else 'no_decay'}"].append(p)
    return groups


def _no_weight_decay(model: nn.Module) -> set[str]:
    """Names of the parameters that any submodule lists in its ``no_weight_decay()`` (timm's
    convention), as ``model`` names them: a listed name is relative to its module (the
    wrapper adds "backbone."), and may be an fnmatch pattern ("pos_embed.*", matched as
    timm does) or a module's name, which covers that module's parameters."""
    names = [n for n, _ in model.named_parameters()]
    exempt: set[str] = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if not callable(listed):
            continue
        for entry in listed():
            full = f"{prefix}.{entry}" if prefix else entry
            exempt.update(n for n in names if fnmatchcase(n, full) or n.startswith(f"{full}."))
    return exempt
