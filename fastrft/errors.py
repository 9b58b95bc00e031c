"""Errors the `fastrft` command turns into exit codes; importing this module costs nothing
(no torch), so the command's start-up stays fast."""

import re

# the exit codes of `fastrft`: a sweep reads a run's to tell bad input from a crash, and a
# folder another process holds (75: sysexits' EX_TEMPFAIL, "try again later") from both
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_BUSY, EXIT_INTERRUPTED = 2, 3, 75, 130


class MissingDependency(ImportError):
    """An optional package a feature needs is not installed; the message says how to install
    it. An ImportError, so code that tests for one still works."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def not_loadable(path: object, what: str, err: Exception) -> ValueError:
    """One line saying ``path`` is not a ``what``, for a torch.load (weights_only) or safetensors
    failure: torch's own message spans lines and advises weights_only=False, which would run
    whatever code a hostile file holds."""
    text = str(err)
    refused = re.search(r"WeightsUnpickler error: (.*?)(?:\. |\n|$)", text)
    if refused:
        reason = f"refused, loading it could run code: {refused[1]}"
    else:
        reason = f"{type(err).__name__}: {next(iter(text.strip().splitlines()), '')}"
    return ValueError(f"{path} is not a {what} ({reason})")
