"""What every attack shares: argument checks, the model's state while an attack runs, and
the input gradient. Attacks know nothing of training; the model maps pixels to logits: a
tensor (N, classes), or an output holding one as its ``logits`` attribute or key, as
Hugging Face classifiers return (see :func:`logits_of`)."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from fastrft.attack_registry import canonical_norm
from fastrft.kernels import batch_major, per_sample

from .losses import LOSSES, LossFn

ModelMode = Literal["eval", "train", "keep"]
AttackT = TypeVar("AttackT", bound=Callable[..., Tensor])


def _capturing(x: Tensor) -> bool:
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _check_budget(name: str, value: object, example: str) -> None:
    """A step size or budget given as a number: finite and non-negative (numpy's too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a bool" if isinstance(value, bool) else type(value).__name__
        raise ValueError(
            f"{name} must be a finite non-negative number (e.g. {example}), got {value!r} ({kind})"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name} must be a finite non-negative number (e.g. {example}), got {value!r}"
        )


def _check_per_sample(name: str, value: Tensor, n: int) -> None:
    if value.numel() not in (1, n):
        raise ValueError(
            f"{name} must be a float or hold one value per sample ({n}), "
            f"got shape {tuple(value.shape)}"
        )


def check_inputs(
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    *,
    alpha: float | Tensor | None = None,
    steps: int = 1,
    loss: str | LossFn = "ce",
    targeted: bool = False,
    model_mode: str = "eval",
    validate_values: bool = True,
) -> None:
    """Raise a ValueError that names the bad argument and says how to fix it.

    ``alpha`` (a step size, None where the attack sets its own) must be > 0, or 0 where eps
    is 0. Checks that read tensor values (x in [0, 1], eps >= 0) synchronise with the device;
    they are skipped with ``validate_values=False`` and during CUDA graph capture.
    """
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"x must be a float tensor of pixels in [0, 1], got {kind}; "
            "convert uint8 images with x.float() / 255"
        )
    if x.dim() in (0, 1, 3):  # a single (C, H, W) image would pass its channels as images
        raise ValueError(
            f"x must be a batch (N, C, H, W), got shape {tuple(x.shape)}; pass a single image "
            "as x[None]"
        )
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}); pass at least one image")
    labels = not callable(loss)  # a loss function of one's own may take any per-sample target
    if not isinstance(y, Tensor) or y.dim() == 0:
        raise ValueError("y must be a tensor with one row per sample")
    if labels and (y.dim() != 1 or y.dtype not in (torch.int64, torch.int32)):
        raise ValueError(
            "y must be a 1-d integer tensor of class labels, got "
            f"{getattr(y, 'dtype', type(y).__name__)} of shape "
            f"{tuple(getattr(y, 'shape', ()))}"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y have different batch sizes: {x.shape[0]} images, {y.shape[0]} labels"
        )
    if y.device != x.device:
        raise ValueError(f"y is on {y.device} but x is on {x.device}; move both to one device")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if labels and loss not in LOSSES:
        raise ValueError(
            f"loss must be one of {sorted(LOSSES)} or a function (logits, y) -> per-sample "
            f"losses, got {loss!r}"
        )
    if targeted and loss != "ce":
        raise ValueError(f"targeted attacks support loss='ce' only, got loss={loss!r}")
    if model_mode not in ("eval", "train", "keep"):
        raise ValueError(f"model_mode must be 'eval', 'train' or 'keep', got {model_mode!r}")
    for name, value, example in (("eps", eps, "8/255"), ("alpha", alpha, "2/255")):
        if isinstance(value, Tensor):
            _check_per_sample(name, value, x.shape[0])
        elif value is not None:
            _check_budget(name, value, example)
    if not isinstance(alpha, Tensor) and alpha == 0 and not isinstance(eps, Tensor) and eps:
        raise ValueError(f"alpha must be > 0 with eps {eps!r} (a step of 0 never moves)")
    if not validate_values or _capturing(x):
        return
    if isinstance(eps, Tensor) and not bool(torch.isfinite(eps).all() & (eps >= 0).all()):
        raise ValueError(
            f"eps must be non-negative and finite for every sample, got min {eps.min().item():.4g}"
        )
    if isinstance(alpha, Tensor) or (isinstance(eps, Tensor) and alpha == 0):
        _check_step_values(alpha, eps, x)
    lo, hi = torch.aminmax(x.detach())
    if math.isnan(lo.item()) or math.isnan(hi.item()):
        raise ValueError("x holds NaN pixels; pixels must be numbers in [0, 1]")
    if lo.item() < 0 or hi.item() > 1:
        raise ValueError(
            f"x must hold pixels in [0, 1], got values in [{lo.item():.4g}, "
            f"{hi.item():.4g}]; the model, not the input, owns normalisation"
        )


def _check_step_values(alpha: float | Tensor, eps: float | Tensor, x: Tensor) -> None:
    """alpha finite and > 0 for every sample, or 0 where eps is 0 (the step then never moves)."""
    n = x.shape[0]
    a, e = per_sample(alpha, n, x.device), per_sample(eps, n, x.device)
    if not bool((torch.isfinite(a) & ((a > 0) | ((a == 0) & (e == 0)))).all()):
        raise ValueError(
            f"alpha must be finite and > 0 for every sample with eps > 0, got min "
            f"{a.min().item():.4g}"
        )


@contextmanager
def attack_mode(model: nn.Module, mode: ModelMode = "eval", freeze: bool = True) -> Iterator[None]:
    """Run the model as the attack wants it, then restore it exactly as found.

    ``mode`` "eval" (the default: BatchNorm uses running statistics, dropout is off),
    "train", or "keep". ``freeze`` turns requires_grad off on every parameter, so that
    compiled or graphed models, which differentiate every input that requires grad, compute
    no weight gradients. Each module's own training flag and each parameter's own
    requires_grad flag are restored, even if the attack raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if mode != "keep":
            model.train(mode == "train")
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def with_gradients(attack: AttackT) -> AttackT:
    """Run ``attack`` with autograd on, so that it works where evaluation loops call it: under
    ``torch.no_grad()`` and under ``torch.inference_mode()`` (inputs made there included).
    The input gradient is all it computes; the caller's modes are back on return."""

    @functools.wraps(attack)
    def run(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return attack(*args, **kwargs)

    return run  # type: ignore[return-value]


def prepare(
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    *,
    alpha: float | Tensor | None = None,
    norm: str,
    steps: int,
    loss: str | LossFn,
    targeted: bool,
    model_mode: str,
    validate: bool,
) -> tuple[str, Tensor, Tensor, Tensor]:
    """What every attack does first: (canonical norm, x detached and batch-major, y, eps as a
    float32 per-sample vector), after the argument checks. eps becomes that vector here, once
    (:func:`fastrft.kernels.per_sample`; one the engine made already passes through), and the
    kernels take it as it is. A y made in inference mode is copied: autograd saves the loss's
    targets for the backward pass, which inference tensors refuse."""
    norm = canonical_norm(norm)
    check_inputs(
        x,
        y,
        eps,
        alpha=alpha,
        steps=steps,
        loss=loss,
        targeted=targeted,
        model_mode=model_mode,
        validate_values=validate,
    )
    x = detached_input(x)
    y = y.clone() if y.is_inference() else y
    return norm, x, y, per_sample(eps, x.shape[0], x.device)


def detached_input(x: Tensor) -> Tensor:
    """x detached; copied to contiguous only if its layout is neither NCHW- nor NHWC-dense
    (a strided view, say), which the fused kernels cannot walk sample by sample."""
    x = x.detach()
    return x if batch_major(x) else x.contiguous()


def loss_and_grad(
    model: nn.Module, x_adv: Tensor, y: Tensor, loss_fn: LossFn, need_grad: bool = True
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-sample losses, logits and the gradient of the summed loss with respect to the input.

    Only the input gradient is asked of autograd. The loss is computed on float32 logits
    (bf16 logits lose the small loss differences that decide a step). The gradient comes
    back dense in x_adv's layout: autograd may return an expanded view (a model that reads
    only the pixel sum, say), which the kernels cannot walk and the attacks write into.
    """
    x_in = x_adv.detach().requires_grad_(need_grad)
    with torch.enable_grad() if need_grad else torch.no_grad():
        logits = logits_of(model(x_in), x_in.shape[0])
        losses = loss_fn(logits.float(), y)
        grad = torch.autograd.grad(losses.sum(), x_in)[0] if need_grad else None
    if grad is not None and grad.stride() != x_in.stride():
        grad = torch.empty_like(x_in).copy_(grad)
    return losses.detach(), logits.detach(), grad


def logits_of(output: object, n: int) -> Tensor:
    """The logits (n, classes) in what a model returned for n images: the tensor itself, or
    the ``logits`` attribute or key of an output object (Hugging Face's ModelOutput has
    both). Anything else is a ValueError saying what came back: a tuple is not guessed at,
    models put features or auxiliary heads first as well as logits."""
    logits = output
    if isinstance(output, Mapping):
        logits = output.get("logits")
    elif not isinstance(output, Tensor):
        logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor) and logits.dim() == 2 and logits.shape[0] == n:
        return logits
    raise ValueError(
        f"model returned {_describe(output)}; attacks need logits (N, classes) for the {n} "
        "images: make its forward return them (a tensor, or an output with a .logits tensor)"
    )


def _describe(output: object) -> str:
    """What a model returned, in a few words."""
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output)[:5]}"
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(v).__name__ for v in output[:5])
        return f"a {type(output).__name__} of {len(output)} ({kinds})"
    return f"a {type(output).__name__} (no .logits tensor)"


def succeeded(logits: Tensor, y: Tensor, targeted: bool) -> Tensor:
    """Per sample: misclassified (untargeted), or classified as its target (targeted)."""
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


def take_where(mask: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """dst[n] <- src[n] for the samples where mask[n] is true, in place, with no host sync."""
    m = mask.view(-1, *([1] * (dst.dim() - 1)))
    return torch.where(m, src, dst, out=dst)
