"""`fastrft train ARGS` that counts the training steps its process makes in each epoch and
writes them, after each epoch, to FOLDER/steps.RANK.json (FOLDER its first argument), so a
test under torchrun can compare the ranks' counts."""

import json
import os
import sys
from pathlib import Path

from fastrft.cli import main
from fastrft.engine import Trainer

folder = Path(sys.argv[1])
counts: list[int] = []
train_epoch, eager_step = Trainer._train_epoch, Trainer._eager_step


def counted_epoch(self, epoch):
    counts.append(0)
    record = train_epoch(self, epoch)
    (folder / f"steps.{os.environ['RANK']}.json").write_text(json.dumps(counts))
    return record


def counted_step(self, *args, **kwargs):
    counts[-1] += 1
    return eager_step(self, *args, **kwargs)


Trainer._train_epoch = counted_epoch
Trainer._eager_step = counted_step
main(["train", *sys.argv[2:]])
