"""Errors the `fastrft` command turns into exit codes; importing this module costs nothing
(no torch), so the command's start-up stays fast."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
