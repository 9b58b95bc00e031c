"""Fast adversarial attacks: PGD, FGSM-RS and APGD on fused Triton kernels.

Functions take (model, x, y, eps, ...) with x pixels in [0, 1]; objects mirror torchattacks.
"""

from .apgd import apgd, apgd_checkpoints
from .core import attack_mode
from .losses import LOSSES
from .objects import APGD, FFGSM, FGSM, PGD, PGDL2, Attack
from .pgd import fgsm, pgd

__all__ = [
    "APGD",
    "FFGSM",
    "FGSM",
    "LOSSES",
    "PGD",
    "PGDL2",
    "Attack",
    "apgd",
    "apgd_checkpoints",
    "attack_mode",
    "fgsm",
    "pgd",
]
