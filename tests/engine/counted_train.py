"""`fastrft train ARGS` that counts the training steps its process makes in each epoch and
writes them, after each epoch, to FOLDER/steps.RANK.json (FOLDER its first argument), so a
test under torchrun can compare the ranks' counts."""

import json
import os
import sys
from pathlib import Path

from fastrft.cli import main
from fastrft.engine import Trainer
from fastrft.engine.step import TrainStep

folder = Path(sys.argv[1])
counts: list[int] = []
train_epoch, train_step = Trainer._train_epoch, TrainStep.__call__


def counted_epoch(self, epoch):
    counts.append(0)
    record = train_epoch(self, epoch)
    (folder / f"steps.{os.environ['RANK']}.json").write_text(json.dumps(counts))
    return record


def counted_step(self, *args, **kwargs):
    counts[-1] += 1
    return train_step(self, *args, **kwargs)


Trainer._train_epoch = counted_epoch
TrainStep.__call__ = counted_step
main(["train", *sys.argv[2:]])
