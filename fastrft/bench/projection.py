"""What a whole fine-tuning run would take at the measured speed.

RFT-fix attacks in every epoch. The paper's Epsilon-Scheduling (hinge) trains its first T1
epochs at eps = 0, where the engine runs no attack, so those cost a clean step (T_train).
Training only: evaluation passes and data loading are not included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RunShape:
    images: int
    """Training images per epoch."""
    epochs: int
    clean_epochs: int
    """Epochs at eps = 0 under the hinge schedule (the paper: 12 of 50)."""

    @classmethod
    def paper(cls, images: int, epochs: int) -> RunShape:
        return cls(images, epochs, round(epochs * 12 / 50))


@dataclass(frozen=True)
class Projection:
    fix_s: float
    hinge_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def project(
    shape: RunShape, adversarial_images_per_s: float, clean_step_ms: float | None, batch_size: int
) -> Projection:
    """Seconds for the run under RFT-fix and under the hinge schedule. Without a clean step
    time the hinge run is projected as if every epoch attacked (an upper bound)."""
    adversarial_epoch = shape.images / adversarial_images_per_s
    clean_epoch = (
        adversarial_epoch
        if clean_step_ms is None
        else shape.images / (batch_size / (clean_step_ms / 1e3))
    )
    fix = shape.epochs * adversarial_epoch
    hinge = (
        shape.clean_epochs * clean_epoch + (shape.epochs - shape.clean_epochs) * adversarial_epoch
    )
    return Projection(fix, hinge)
