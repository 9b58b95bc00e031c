"""`fastrft eval` on a saved run: the curve, clean/adv/E.adv, bad input; the trainer's
validation and final evaluation by the same rules."""

import io
import json
import re
import shutil
import subprocess
import sys
from itertools import pairwise

import pytest
import torch
from rich.console import Console

from fastrft import evaluate as evaluate_module
from fastrft.cli import main
from fastrft.config import ConfigError, load_config
from fastrft.data import build_eval_loader
from fastrft.engine import Trainer
from fastrft.engine import evaluation as evaluation_module
from fastrft.engine.distributed import Dist
from fastrft.engine.evaluation import validate
from tests.engine.test_train import TINY, _files
from tests.helpers import torchrun
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


def test_eval_by_each_strategy_says_so_and_counts_its_passes(run_dir, tmp_path, capsys):
    """48 images in one batch, budgets 1..4/255, 2 steps: training's curve bisected by
    default, ceil(log2(5)) = 3 calls; attacking each budget takes 4; the flag and the config
    key agree."""
    trained = json.loads((run_dir / "results.json").read_text())
    cost = ("strategy", "attack_calls", "gradient_passes")
    assert tuple(trained[k] for k in cost) == ("bisect", 3, 6)
    flag, key = tmp_path / "flag.json", tmp_path / "key.json"
    main(["eval", str(run_dir), "--strategy", "all", "--out", str(flag)])
    assert "strategy all: 4 attack calls, 8 gradient passes" in capsys.readouterr().out
    main(["eval", str(run_dir), "--out", str(key), "eval.strategy=all"])
    ev = json.loads(flag.read_text())
    assert ev == {**json.loads(key.read_text()), "checkpoint": ev["checkpoint"]}
    assert tuple(ev[k] for k in cost) == ("all", 4, 8)
    assert ev["accuracy_curve"][0] == trained["clean_acc"]
    curve = trained["accuracy_curve"]
    assert all(b <= a for a, b in pairwise(curve)), f"bisection's curve is monotone: {curve}"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["all", "bisect"])
def test_eval_shared_by_two_processes_gives_one_processs_numbers(run_dir, tmp_path, strategy):
    """torchrun, 2 gloo processes: each evaluates its contiguous half of the 48 images, in
    batches of 10 (so not one process's batches), and the counts are summed: the numbers of
    one process, to the bit. One thread per process in both runs (torchrun's default for 2)."""
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"{processes}.json"
        args = ["--no-progress", "--strategy", strategy, "--out", str(out)]
        run = torchrun(
            "-m",
            "fastrft",
            "eval",
            str(run_dir),
            *args,
            "data.eval_batch_size=10",
            nproc=processes,
            env={"OMP_NUM_THREADS": "1"},
        )
        assert run.returncode == 0, run.stderr[-3000:]
        runs[processes] = json.loads(out.read_text())
    one, two = runs[1], runs[2]
    assert (one["processes"], two["processes"]) == (1, 2)
    for key in ("accuracy_curve", "clean_acc", "adv_acc", "expected_robustness", "num_samples"):
        assert one[key] == two[key], key
    assert two["num_samples"] == 48 and two["strategy"] == strategy
    # one process: 5 batches; two: 3 each, every batch attacked per budget or per round
    assert (one["attack_calls"], two["attack_calls"]) == tuple(
        batches * (4 if strategy == "all" else 3) for batches in (5, 6)
    )
    assert 0 < one["accuracy_curve"][-1] < one["clean_acc"], "the attack must break images"


def test_each_rank_evaluates_its_shard_keyed_by_its_index(run_dir, monkeypatch):
    """Rank 1 of 2 (no process group: the sum across ranks is left out) evaluates images
    24..47 of the split, their random starts keyed from index 24."""
    seen = {}

    def shard_only(model, batches, *args, first_index, sum_across, **kwargs):
        seen["first_index"], seen["sums"] = first_index, sum_across is not None
        seen["labels"] = [label for _, y in batches for label in y.tolist()]
        return measure_curve(model, batches, *args, first_index=first_index, **kwargs)

    whole = [label for _, y in _val_loader(run_dir) for label in y.tolist()]
    measure_curve = evaluate_module.measure_curve
    monkeypatch.setattr(evaluate_module, "measure_curve", shard_only)
    monkeypatch.setattr(evaluation_module, "init_distributed", lambda device: Dist(1, 2))
    results = evaluation_module.evaluate_checkpoint(run_dir)
    assert seen == {"first_index": 24, "sums": True, "labels": whole[24:]}
    assert results["num_samples"] == 24 and results["processes"] == 2


def _val_loader(run_dir):
    cfg = load_config([run_dir / "config.yaml"], [])
    return build_eval_loader(cfg.data, torch.device("cpu"), seed=cfg.seed)


def test_eval_seed_keys_the_random_starts(run_dir, tmp_path, monkeypatch):
    """--seed (eval.seed) is the random starts' key, recorded; by default the run's seed."""
    seeds = []

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return measure_curve(*args, seed=seed, **kwargs)

    measure_curve = evaluate_module.measure_curve
    monkeypatch.setattr(evaluate_module, "measure_curve", spy)
    main(["eval", str(run_dir), "--seed", "7", "--out", str(tmp_path / "7.json")])
    main(["eval", str(run_dir), "--out", str(tmp_path / "run.json")])
    main(["eval", str(run_dir), "eval.seed=9", "--out", str(tmp_path / "9.json")])
    assert seeds == [7, 0, 9]
    assert [json.loads((tmp_path / f"{n}.json").read_text())["seed"] for n in (7, "run", 9)] == [
        7,
        0,
        9,
    ]


def test_autoattack_refuses_to_share_an_evaluation(run_dir, monkeypatch):
    monkeypatch.setattr(evaluation_module, "init_distributed", lambda device: Dist(0, 2))
    with pytest.raises(ConfigError, match="autoattack runs in one process: drop torchrun"):
        evaluation_module.evaluate_checkpoint(run_dir, attack="autoattack")


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
        (["RUN", "--strategy", "half"], "invalid choice: 'half'"),
        (["RUN", "eval.strategy=half"], "eval.strategy: must be all or bisect, got 'half'"),
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
    out = validate(trainer.net, trainer.val_loader, trainer.cfg, trainer.device)
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


def _copy(run_dir, tmp_path):
    """The trained run, without the eval.json other tests wrote into it."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("eval.json"))
    return run


def test_eval_of_checkpoint_files_writes_beside_each(run_dir, tmp_path):
    """Two checkpoints' evaluations used to overwrite each other in RUN_DIR/eval.json."""
    run = _copy(run_dir, tmp_path)
    for name in ("last", "prev"):
        main(["eval", str(run / "checkpoints" / f"{name}.pt")])
    for name in ("last", "prev"):
        ev = json.loads((run / "checkpoints" / f"{name}.eval.json").read_text())
        assert ev["checkpoint"] == str(run / "checkpoints" / f"{name}.pt")
    assert not (run / "eval.json").exists()


def _refused_before_evaluating(argv, capsys, monkeypatch) -> str:
    """`fastrft eval` ``argv``, which must be refused before evaluating: its one line."""

    def evaluate(*args, **kwargs):
        raise AssertionError("evaluated before the refusal")

    monkeypatch.setattr(evaluate_module, "paper_metrics", evaluate)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("results", "{tmp}/results is a folder"),
        ("missing/eval.json", "the folder {tmp}/missing does not exist"),
        ("notes.txt/eval.json", "{tmp}/notes.txt is a file"),
    ],
)
def test_an_out_eval_cannot_write_is_refused_before_evaluating(
    run_dir, tmp_path, capsys, monkeypatch, out, message
):
    """It used to evaluate, then fail on the write (a traceback for a folder)."""
    (tmp_path / "results").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    before = _files(tmp_path)
    err = _refused_before_evaluating(
        [str(run_dir), "--out", str(tmp_path / out)], capsys, monkeypatch
    )
    assert f"--out: {message.format(tmp=tmp_path)}" in err, err
    assert _files(tmp_path) == before and sorted(tmp_path.iterdir()) == [
        tmp_path / "notes.txt",
        tmp_path / "results",
    ]


@pytest.mark.parametrize(
    ("name", "content"), [("train.yaml", b"epochs: 3\n"), ("notes.txt", b"\x00\x01 bytes")]
)
def test_a_file_that_is_no_checkpoint_is_named(tmp_path, capsys, monkeypatch, name, content):
    """It used to name torch's internal error (IndexError: pop from empty list for a YAML
    file) rather than what eval takes."""
    path = tmp_path / name
    path.write_bytes(content)
    err = _refused_before_evaluating([str(path)], capsys, monkeypatch)
    assert f"{path} is not a checkpoint" in err and "run directory" in err, err
    assert sorted(tmp_path.iterdir()) == [path]


def test_ctrl_c_in_eval_says_nothing_was_written(run_dir, tmp_path, capsys, monkeypatch):
    """eval cannot resume: it used to advise rerunning "to resume from the last checkpoint"."""
    run = _copy(run_dir, tmp_path)
    before = _files(run)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "paper_metrics", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(run)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and "nothing was written" in err, err
    assert "last checkpoint" not in err, err
    assert _files(run) == before


@pytest.fixture
def terminal(monkeypatch):
    """stderr taken for a terminal: rich draws progress on terminals only, not dumb ones."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TERM", "xterm")


def _counts(text: str, total: int) -> set[str]:
    """Each "k/total" the progress showed."""
    return set(re.findall(rf"(?<![\d/])(\d+)/{total}(?!\d)", text))


@pytest.mark.parametrize("shown", [True, False])
def test_eval_shows_its_progress_batch_by_batch(run_dir, tmp_path, capsys, terminal, shown):
    """On a terminal, each of the 3 validation batches (48 images, 16 a batch) is counted;
    --no-progress shows none. It used to print nothing until the end."""
    flags = [] if shown else ["--no-progress"]
    out = tmp_path / "eval.json"
    main(["eval", str(run_dir), "--out", str(out), "data.eval_batch_size=16", *flags])
    counts = _counts(capsys.readouterr().err, 3)
    assert counts == set() if not shown else {"1", "2", "3"} <= counts, counts
    assert json.loads(out.read_text())["num_samples"] == 48


def test_autoattack_shows_its_progress_budget_by_budget(
    run_dir, tmp_path, capsys, monkeypatch, terminal
):
    """AutoAttack attacks the whole split at one budget at a time: the 5 budgets (0 to 4/255)
    are counted. AutoAttack itself is stood in for: its verdict is not what is tested."""
    monkeypatch.setattr(evaluate_module, "autoattack_accuracy", lambda *args, **kwargs: 0.5)
    out = tmp_path / "aa.json"
    main(["eval", str(run_dir), "--attack", "autoattack", "--out", str(out)])
    err = capsys.readouterr().err
    assert "autoattack, budgets" in err and {"1", "2", "3", "4", "5"} <= _counts(err, 5), err
    assert json.loads(out.read_text())["accuracy_curve"] == [0.5] * 5


def test_the_final_evaluation_of_training_shows_its_progress(tmp_path):
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    extra = ["epochs=1", "data.eval_batch_size=16", f"out_dir={tmp_path / 'run'}"]
    Trainer(load_config([], [*TINY, *extra]), console=console, progress=True).fit()
    shown = console.file.getvalue()
    assert re.search(r"final evaluation, batches.*(?<![\d/])3/3(?!\d)", shown), shown[-2000:]
