"""`fastrft eval` on a saved run: the curve, clean/adv/E.adv, bad input."""

import json
import subprocess
import sys

import pytest
import torch

from fastrft.cli import main
from tests.engine.test_train import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    main(["train", "--no-progress", *TINY, "epochs=2", "schedule.name=fix", f"out_dir={out}"])
    return out


def test_eval_writes_the_curve_and_agrees_with_training(run_dir):
    main(["eval", str(run_dir), "--eps-max", "6/255", "--steps", "3"])
    ev = json.loads((run_dir / "eval.json").read_text())
    trained = json.loads((run_dir / "results.json").read_text())
    assert ev["eps_grid"] == pytest.approx([k / 255 for k in range(7)])
    assert ev["clean_acc"] == trained["clean_acc"]  # deterministic: same model, same split
    assert ev["adv_acc"] == ev["accuracy_curve"][4]  # the run's eps is 4/255
    assert ev["adv_acc"] <= ev["expected_robustness"] <= ev["clean_acc"]


def test_eval_of_a_checkpoint_file_with_pgd(run_dir, tmp_path):
    out = tmp_path / "pgd.json"
    main(["eval", str(run_dir / "checkpoints" / "last.pt"), "--attack", "pgd", "--out", str(out)])
    assert json.loads(out.read_text())["attack"] == "pgd"


@pytest.mark.slow
def test_eval_with_autoattack(run_dir, tmp_path):
    pytest.importorskip("pyautoattack")
    out = tmp_path / "aa.json"
    main(["eval", str(run_dir), "--attack", "autoattack", "--eps-max", "1/255", "--out", str(out)])
    ev = json.loads(out.read_text())
    assert len(ev["accuracy_curve"]) == 2 and ev["accuracy_curve"][1] <= ev["clean_acc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/run"], "not found"),
        (["RUN", "--eps-max", "x"], "expected a number or a fraction"),
        (["RUN", "data.source=npz"], "data.root: is required"),
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
