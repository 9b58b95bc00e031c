"""The training engine: the trainer, the attacker, checkpoints, logs, speed settings."""

from .trainer import Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged"]
