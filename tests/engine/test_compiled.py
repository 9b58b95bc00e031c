"""The compiled model's variants: validation runs at one batch shape (its short last batch
padded, the padding left out of the numbers), and a short compiled run compiles a known number
of graphs, counted in its metrics, well under Dynamo's recompile limit."""

import json
import warnings

import pytest
import torch

from fastrft.cli import main
from fastrft.engine import evaluation
from fastrft.engine.compiled import recompile_limit
from fastrft.engine.evaluation import validate
from tests.engine.test_train import TINY, _trainer

# 48 validation images in batches of 40: a short last batch of 8
SHORT_LAST = ["data.eval_batch_size=40", "eval.attack=apgd", "schedule.name=fix"]

# the graphs of one short run (Dynamo guards on grad mode and on each tensor's requires_grad,
# parameters included, and, compiled with static shapes, on the batch size): at the training
# batch size (32), the training forward (parameters trained), the attack's (parameters frozen,
# a gradient on the input) and APGD's last no-grad pass; at the validation batch size (40),
# the attack's and the no-grad passes (validation's clean pass and APGD's last pass: both with
# parameters frozen). Before validation padded its short last batch and froze its parameters,
# the run compiled 8 graphs, Dynamo's limit, past which it ran eagerly.
VARIANTS = 5


@pytest.mark.slow
def test_a_short_compiled_run_compiles_a_known_number_of_graphs(tmp_path):
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the recompile-limit warning
        main(
            [
                "train",
                "--no-progress",
                *TINY,
                f"out_dir={out}",
                "epochs=2",
                "speed.compile=true",
                *SHORT_LAST,
            ]
        )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    counts = [r["compiled_graphs"] for r in records]
    assert counts[0] == counts[1] <= VARIANTS < recompile_limit(), counts


def test_validation_pads_its_last_batch_and_counts_only_real_images(tmp_path, monkeypatch):
    """The model sees one batch shape; the loss and accuracies are those of the unpadded batches
    (random starts included: the padding comes after the real rows)."""
    trainer = _trainer(tmp_path, *SHORT_LAST)
    assert [len(y) for _, y in trainer.val_loader] == [40, 8]
    shapes = set()
    trainer.net.register_forward_pre_hook(lambda _, args: shapes.add(args[0].shape[0]))
    padded = validate(trainer.net, trainer.val_loader, trainer.cfg, trainer.device)
    assert shapes == {40}
    monkeypatch.setattr(evaluation, "pad_rows", lambda t, size: t)
    unpadded = validate(trainer.net, trainer.val_loader, trainer.cfg, trainer.device)
    assert padded == unpadded and set(padded) == {
        "val_clean_loss",
        "val_clean_acc",
        "val_adv_loss",
        "val_adv_acc",
    }


def test_pad_rows_keeps_the_memory_layout():
    x = torch.rand(3, 3, 4, 4).to(memory_format=torch.channels_last)
    padded = evaluation.pad_rows(x, 5)
    assert padded.shape == (5, 3, 4, 4) and padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[:3], x) and torch.equal(padded[3:], x[-1:].expand(2, 3, 4, 4))
