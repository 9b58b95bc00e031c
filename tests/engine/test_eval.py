"""`fastrft eval` on a saved run: the curve, clean/adv/E.adv, bad input; the trainer's
validation and final evaluation by the same rules."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from fastrft.cli import main
from fastrft.config import load_config
from fastrft.engine import Trainer
from tests.engine.test_train import TINY
from tests.test_evaluate import WrongOnClean, every_other

REPRODUCIBLE = ("attack", "steps", "precision", "seed", "num_samples", "eps", "norm")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    main(["train", "--no-progress", *TINY, "epochs=2", "schedule.name=fix", f"out_dir={out}"])
    return out


def test_eval_gives_the_curve_of_training_every_time(run_dir):
    """Same checkpoint, same numbers: results.json from training, and two `fastrft eval`s
    (random starts included: seeded with the run's seed)."""
    trained = json.loads((run_dir / "results.json").read_text())
    main(["eval", str(run_dir)])
    first = json.loads((run_dir / "eval.json").read_text())
    main(["eval", str(run_dir)])
    second = json.loads((run_dir / "eval.json").read_text())
    assert first["accuracy_curve"] == trained["accuracy_curve"] == second["accuracy_curve"]
    assert first["eps_grid"] == trained["eps_grid"] == [k / 255 for k in range(5)]
    assert {k: first[k] for k in REPRODUCIBLE} == {k: trained[k] for k in REPRODUCIBLE}
    assert trained["precision"] == "fp32" and trained["seed"] == 0 and trained["steps"] == 2
    assert trained["num_samples"] == 48 and trained["attack"] == "apgd"


def test_eval_options_change_the_grid_and_attack(run_dir, tmp_path):
    out = tmp_path / "wide.json"
    main(["eval", str(run_dir), "--eps-max", "6/255", "--steps", "3", "--out", str(out)])
    ev = json.loads(out.read_text())
    trained = json.loads((run_dir / "results.json").read_text())
    assert ev["eps_grid"] == [k / 255 for k in range(7)] and ev["steps"] == 3
    assert ev["clean_acc"] == trained["clean_acc"]  # deterministic: same model, same split
    assert ev["adv_acc"] == ev["accuracy_curve"][4]  # the run's eps is 4/255
    assert ev["adv_acc"] <= ev["expected_robustness"] <= ev["clean_acc"]
    assert all(a <= ev["clean_acc"] for a in ev["accuracy_curve"])


def test_eval_in_bf16_says_so(run_dir, tmp_path):
    out = tmp_path / "bf16.json"
    main(["eval", str(run_dir), "--precision", "bf16", "--out", str(out)])
    ev = json.loads(out.read_text())
    assert ev["precision"] == "bf16" and len(ev["accuracy_curve"]) == 5


def test_eval_of_a_checkpoint_file_with_pgd(run_dir, tmp_path):
    out = tmp_path / "pgd.json"
    main(["eval", str(run_dir / "checkpoints" / "last.pt"), "--attack", "pgd", "--out", str(out)])
    assert json.loads(out.read_text())["attack"] == "pgd"


def test_eval_of_a_run_falls_back_to_prev_as_training_does(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    capsys.readouterr()
    main(["eval", str(run)])
    err = capsys.readouterr().err
    assert "last.pt" in err and "falling back to" in err, err
    evaluated = json.loads((run / "eval.json").read_text())["checkpoint"]
    assert evaluated == str(run / "checkpoints" / "prev.pt")


@pytest.mark.slow
def test_eval_with_autoattack(run_dir, tmp_path):
    pytest.importorskip("pyautoattack")
    out = tmp_path / "aa.json"
    args = ["--attack", "autoattack", "--eps-max", "1/255", "--out", str(out), "attack.eps=1/255"]
    main(["eval", str(run_dir), *args])
    ev = json.loads(out.read_text())
    assert len(ev["accuracy_curve"]) == 2 and ev["accuracy_curve"][1] <= ev["clean_acc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/run"], "not found"),
        (["RUN", "--eps-max", "x"], "expected a number or a fraction"),
        (["RUN", "data.source=npz"], "data.root: is required"),
        (["RUN", "--eps-max", "2/255"], "eval.eps_max: 0.00784314 is below attack.eps"),
        (["RUN", "--grid-step", "3/255"], "attack.eps: 0.0156863 is not on the evaluation grid"),
        (["RUN", "--precision", "fp16"], "invalid choice: 'fp16'"),
        pytest.param(
            ["RUN", "device=cuda"],
            "device: CUDA was asked for but no GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_input(run_dir, args, message):
    args = [str(run_dir) if a == "RUN" else a for a in args]
    run = subprocess.run(
        [sys.executable, "-m", "fastrft", "eval", *args], capture_output=True, text=True
    )
    assert run.returncode == 2 and message in run.stderr, run.stderr


def test_validation_counts_a_sample_robust_only_if_correct_on_clean(tmp_path):
    """The per-epoch adversarial accuracy follows AutoAttack's rule too: a model wrong on
    each clean image but right around it scores no higher under attack than clean."""
    cfg = load_config([], [*TINY, f"out_dir={tmp_path / 'run'}", "schedule.name=fix"])
    trainer = Trainer(cfg, progress=False)
    x, y = (torch.cat(t) for t in zip(*trainer.val_loader, strict=True))
    trainer.net = WrongOnClean(x, y, every_other(len(y)), trainer.num_classes)
    out = trainer._validate()
    assert out["val_clean_acc"] == 0.5
    assert out["val_adv_acc"] == 0.5, f"above clean accuracy: {out}"


def test_an_l2_run_trains_and_evaluates(tmp_path):
    """An l_2 budget has its own grid (attack.eps / 8 by default), not 1/255 steps."""
    out = tmp_path / "l2"
    args = ["attack.norm=l2", "attack.eps=0.5", "eval.eps_max=null", "epochs=1"]
    main(["train", "--no-progress", *TINY, *args, f"out_dir={out}"])
    results = json.loads((out / "results.json").read_text())
    assert results["eps_grid"] == [k / 16 for k in range(9)] and results["norm"] == "l2"
    assert all(a <= results["clean_acc"] for a in results["accuracy_curve"])
