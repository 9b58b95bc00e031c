"""Projected gradient descent (Madry et al., 2018) and FGSM with random start
(Wong et al., 2020, "Fast is better than free"), on the fused step kernels."""

from __future__ import annotations

from torch import Tensor, nn

from fastrft.attack_registry import canonical_norm, fgsm_step_size, pgd_step_size
from fastrft.kernels import Backend, l2_step, linf_step, per_sample
from fastrft.kernels import random_start as random_start_in_ball

from .core import (
    ModelMode,
    attack_mode,
    loss_and_grad,
    prepare,
    with_gradients,
)
from .losses import LossFn, attack_loss

STEPS = {"linf": linf_step, "l2": l2_step}


@with_gradients
def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    alpha: float | Tensor | None = None,
    steps: int = 10,
    norm: str = "linf",
    random_start: bool = True,
    loss: str | LossFn = "ce",
    targeted: bool = False,
    *,
    model_mode: ModelMode = "eval",
    freeze_params: bool = True,
    backend: Backend = "auto",
    validate: bool = True,
    seed: int | Tensor | None = None,
    ids: Tensor | None = None,
) -> Tensor:
    """PGD: ``steps`` gradient steps of size ``alpha`` inside the ``norm`` ball of radius ``eps``.

    Args:
        model: maps pixels in [0, 1] to logits (it owns its normalisation).
        x: images (N, C, H, W) in [0, 1], contiguous or channels_last; fp32, bf16 or fp16.
        y: labels (N,); the target classes when ``targeted``.
        eps: budget, a float or a per-sample tensor.
        alpha: step size; default 2.5 * eps / steps (Madry et al.).
        steps: number of gradient steps.
        norm: "linf" (sign steps) or "l2" (normalised gradient steps).
        random_start: start from a uniform point of the ball rather than from x.
        seed, ids: the random start's (:func:`fastrft.kernels.random_start`): seed None draws
            from torch's generator, an int or a one-element tensor fixes the noise; ids, an
            integer (N,) tensor, keys each sample's draw so that its start is the same in any
            batch, at any position (default: by position). Unused without random_start.
        loss: "ce", "dlr", or a function (logits, y) -> per-sample losses (y may then be any
            per-sample target, e.g. TRADES' clean probabilities); ascended (descended towards
            y when ``targeted``).
        model_mode: run the model in "eval" mode (default), "train" mode, or "keep" it.
        freeze_params: turn parameters' requires_grad off while crafting (no weight gradients).
        backend: "auto" (fused Triton kernels on CUDA), "triton" or "torch" (references).
        validate: check value ranges (x in [0, 1], eps >= 0); costs one device sync.

    Returns:
        x_adv, detached, in x's dtype and layout, inside the ball and inside [0, 1].
        The model's parameters, their grads, requires_grad flags and modes are as found.

    Works under ``torch.no_grad()`` and ``torch.inference_mode()`` (the usual evaluation
    loop), on inputs made there too: autograd is switched on for the attack alone, and x_adv
    is an ordinary tensor. A model whose parameters were themselves created in inference
    mode cannot be differentiated and raises torch's error.
    """
    # per-sample vectors built once, not at every step
    norm, x, y, eps = prepare(
        x,
        y,
        eps,
        alpha=alpha,
        norm=norm,
        steps=steps,
        loss=loss,
        targeted=targeted,
        model_mode=model_mode,
        validate=validate,
    )
    if alpha is None:
        alpha = pgd_step_size(eps, steps, random_start)
    else:
        alpha = per_sample(alpha, x.shape[0], x.device)
    loss_fn = attack_loss(loss, targeted)
    step = STEPS[norm]
    with attack_mode(model, model_mode, freeze_params):
        if random_start:
            x_adv = random_start_in_ball(x, eps, norm, seed=seed, ids=ids, backend=backend)
        else:
            x_adv = x.clone()
        for _ in range(steps):
            _, _, grad = loss_and_grad(model, x_adv, y, loss_fn)
            step(x_adv, grad, x, eps, alpha, out=x_adv, backend=backend)
    return x_adv


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    alpha: float | Tensor | None = None,
    random_start: bool = True,
    norm: str = "linf",
    **kwargs,
) -> Tensor:
    """FGSM; with ``random_start`` (the default), FGSM-RS of Wong et al. (2020): a uniform
    start in the l_inf ball, then one sign step of ``alpha`` (default 1.25 * eps; eps without
    random start), projected. l_inf only. Other keyword arguments as for :func:`pgd`, the
    random start's ``seed`` and ``ids`` among them."""
    if canonical_norm(norm) != "linf":
        raise ValueError(
            f"fgsm is an l_inf attack (a sign step), got norm={norm!r}; for one l_2 step use "
            "pgd(model, x, y, eps, steps=1, norm='l2')"
        )
    if alpha is None:
        alpha = fgsm_step_size(eps, 1, random_start)
    return pgd(model, x, y, eps, alpha, steps=1, norm="linf", random_start=random_start, **kwargs)
