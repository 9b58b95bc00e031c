"""`fastrft train ARGS` that stops for good in the middle of its second epoch: after the
first checkpoint and one more training step, it writes the file named by its first argument
and waits forever. tests/engine/test_train.py kills it there with SIGKILL, so the kill lands
mid-run by construction, whatever the machine's speed."""

import sys
import threading
from pathlib import Path

from fastrft.cli import main
from fastrft.engine.checkpoint import Checkpointer
from fastrft.engine.step import TrainStep

marker = Path(sys.argv[1])
saved = threading.Event()
save, train_step = Checkpointer.save, TrainStep.__call__


def save_and_note(self, state):
    save(self, state)
    saved.set()


def step_then_wait(self, *args, **kwargs):
    out = train_step(self, *args, **kwargs)
    if saved.is_set():  # one step into the epoch after the first checkpoint
        marker.write_text("paused")
        threading.Event().wait()
    return out


Checkpointer.save = save_and_note
TrainStep.__call__ = step_then_wait
main(["train", *sys.argv[2:]])
