"""Fused Triton kernels for the attack steps, each beside its plain-torch reference.

Every op takes per-sample budgets and step sizes: floats, or ready float32 (N,) vectors
(:func:`per_sample`, the one place a float becomes per-sample) that pass through untouched.
``backend="auto"`` runs the kernel on CUDA tensors and the reference elsewhere.

The ops share their modules' names (``linf_step``, ``l2_step``, ``random_start``), so here
those names are the functions; reach a module itself with ``importlib.import_module``.
"""

from .apgd_update import apgd_update_, apgd_update_reference
from .common import (
    BACKENDS,
    NORMS,
    Backend,
    Norm,
    batch_major,
    check_norm,
    per_sample,
    use_triton,
    view_per_sample,
)
from .l2_step import l2_step, l2_step_reference
from .linf_step import linf_step, linf_step_reference
from .random_start import random_start, random_start_reference

__all__ = [
    "BACKENDS",
    "NORMS",
    "Backend",
    "Norm",
    "apgd_update_",
    "apgd_update_reference",
    "batch_major",
    "check_norm",
    "l2_step",
    "l2_step_reference",
    "linf_step",
    "linf_step_reference",
    "per_sample",
    "random_start",
    "random_start_reference",
    "use_triton",
    "view_per_sample",
]
