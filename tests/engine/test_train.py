"""`fastrft train` end to end on a tiny model and generated data: objectives, schedules,
the compiled path, resume after SIGKILL, DDP with 2 gloo processes, bad configs."""

import copy
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from fastrft import evaluate as evaluate_module
from fastrft.cli import main
from fastrft.config import ConfigError, load_config
from fastrft.engine import Trainer, TrainingDiverged
from fastrft.engine.checkpoint import load_checkpoint
from fastrft.engine.devices import pick_device
from fastrft.engine.distributed import Dist
from fastrft.errors import EXIT_BUSY
from tests.helpers import assert_close, expected_lr, torchrun

TINY = [
    "epochs=3",
    "data.toy_samples=192",
    "data.img_size=8",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "attack.steps=2",
    "eval.steps=2",
    "eval.adv_samples=64",
    "eval.eps_max=4/255",
    "optim.lr=3e-3",
    "device=cpu",
    "speed.compile=false",
]


def _train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    main(["train", "--no-progress", *TINY, f"out_dir={out}", *extra])
    return out


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _trainer(tmp_path, *extra):
    cfg = load_config([], [*TINY, f"out_dir={tmp_path / 'run'}", *extra])
    return Trainer(cfg, progress=False)


@pytest.mark.parametrize("objective", ["standard", "madry", "trades"])
def test_each_objective_trains_and_writes_every_file(tmp_path, objective):
    extra = [f"objective.name={objective}"] + (["attack.name=pgd"] if objective == "trades" else [])
    out = _train(tmp_path, *extra)
    records = _records(out)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for key in (
        "eps",
        "lr",
        "train_loss",
        "train_acc",
        "val_clean_acc",
        "val_clean_loss",
        "val_adv_acc",
        "val_adv_loss",
        "images_per_s",
    ):
        assert key in records[0], key
    results = json.loads((out / "results.json").read_text())
    assert results["eps_grid"] == pytest.approx([k / 255 for k in range(5)])
    assert results["accuracy_curve"][0] == results["clean_acc"]
    assert results["adv_acc"] <= results["expected_robustness"] <= results["clean_acc"]
    assert (out / "config.yaml").exists() and (out / "checkpoints" / "last.pt").exists()
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 3


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("fix", [4, 4, 4]),
        ("hinge", [0, 0, 4]),
        ("step", [0, 4, 4]),
        ("linear", [0, 2, 4]),
        ("cosine", [0, 0, 4]),
        ("auto", [0, 0, 0]),
    ],  # auto: 3 epochs never reach patience 5
)
def test_each_epoch_uses_its_scheduled_eps(tmp_path, schedule, expected):
    # 3 epochs: the hinge's default t1, t2 (0.24 and 0.74 of the run) round to 1 and 2
    extra = {"step": ["schedule.t1=1"], "linear": ["schedule.t2=2"]}.get(schedule, [])
    out = _train(tmp_path, f"schedule.name={schedule}", *extra)
    assert [round(r["eps"] * 255, 6) for r in _records(out)] == expected


def test_a_run_without_attack_logs_eps_0_and_says_where_validation_attacks(tmp_path):
    """Standard fine-tuning never attacks: whatever the schedule, its records and epoch lines
    give the budget it trained at, 0; each epoch line says at which budget the validation's
    adversarial accuracy is measured (attack.eps, every epoch)."""
    printed = io.StringIO()
    out = tmp_path / "run"
    cfg = load_config(
        [], [*TINY, "epochs=2", "objective.name=standard", "schedule.name=fix", f"out_dir={out}"]
    )
    Trainer(cfg, console=Console(file=printed, width=300), progress=False).fit()
    assert [r["eps"] for r in _records(out)] == [0.0, 0.0]
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("epoch")]
    assert len(lines) == 2
    for line in lines:
        assert re.search(r" eps +0\.00/255 ", line), line
        assert re.search(r" adv 0\.\d{3} at 4\.00/255 ", line), line


def test_eps_zero_epochs_run_no_attack(tmp_path, monkeypatch):
    calls = []
    import fastrft.engine.attacker as attacker

    original = attacker.Attacker.__call__
    monkeypatch.setattr(
        attacker.Attacker,
        "__call__",
        lambda self, x, t, eps: calls.append(eps) or original(self, x, t, eps),
    )
    _train(tmp_path, "schedule.name=hinge")
    assert calls and min(calls) > 0  # epochs 0 and 1 have eps = 0: never attacked
    assert len(calls) == 192 // 32  # only epoch 2's six steps


def test_accumulation_plans_the_lr_over_every_update_it_makes(tmp_path):
    """7 micro-batches, accumulate 3: groups of 3, 3 and 1, each an update, so 3 per epoch;
    the cosine is planned over those, and no update runs past its end (at lr 0)."""
    trainer = _trainer(
        tmp_path,
        "data.toy_samples=224",  # 7 batches of 32
        "optim.accumulate=3",
        "epochs=2",
        "optim.warmup_epochs=1",
        "objective.name=standard",
        "eval.adv_samples=0",
    )
    seen = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append(float(opt.param_groups[0]["lr"]))
    )
    trainer.fit()
    assert len(trainer.train_loader) == 7
    assert seen == pytest.approx([expected_lr(3e-3, k, 6, 3, 0.0) for k in range(6)])
    assert seen[-1] > 0, "the last update is the cosine's last planned point"


def test_each_update_takes_the_mean_gradient_over_its_groups_images(tmp_path, monkeypatch):
    """The accumulated gradient equals the gradient of the mean loss over the group's images
    in one batch, the short last group included (a ViT: no batch norm, so one batch and
    several micro-batches give the same gradient)."""
    trainer = _trainer(
        tmp_path,
        "model.name=test_vit",
        "data.img_size=16",
        "data.toy_samples=28",
        "data.batch_size=4",  # 7 micro-batches
        "optim.accumulate=3",
        "objective.name=standard",
    )
    batches, updates = [], []
    loss = trainer.objective.loss

    def recorded(model, x, y, x_adv):
        batches.append((x.clone(), y.clone()))
        return loss(model, x, y, x_adv)

    def one_batch_gradients(opt, args, kwargs):
        ref = copy.deepcopy(trainer.model)  # the parameters the group's gradients were taken at
        ref.zero_grad(set_to_none=True)
        x, y = (torch.cat(t) for t in zip(*batches, strict=True))
        F.cross_entropy(ref(x), y).backward()
        got = [(n, p.grad.clone()) for n, p in trainer.model.named_parameters()]
        updates.append((len(batches), got, [q.grad for q in ref.parameters()]))
        batches.clear()

    monkeypatch.setattr(trainer.objective, "loss", recorded)
    trainer.optimizer.register_step_pre_hook(one_batch_gradients)
    trainer._train_epoch(0)
    assert [size for size, _, _ in updates] == [3, 3, 1]
    for k, (_, got, want) in enumerate(updates):
        for (name, g), w in zip(got, want, strict=True):
            assert_close(g, w, atol=1e-6, rtol=1e-4, what=f"update {k}: {name}.grad")


@pytest.mark.slow
def test_compiled_model_trains(tmp_path):
    out = _train(tmp_path, "speed.compile=true", "epochs=2", "schedule.name=fix")
    assert len(_records(out)) == 2 and (out / "results.json").exists()


def test_a_finished_run_says_so_and_is_not_evaluated_again(tmp_path, capsys, monkeypatch):
    """Rerun, a finished run (last epoch checkpointed, results.json written) says where its
    results are and how to evaluate again; fit() gives the stored results (the demo reads
    them). It used to say "resuming after epoch 2" and evaluate all over again."""
    out = _train(tmp_path)
    before = _files(out)
    evaluations, evaluate = [], evaluate_module.paper_metrics
    monkeypatch.setattr(
        evaluate_module, "paper_metrics", lambda *a, **k: evaluations.append(a) or evaluate(*a, **k)
    )
    capsys.readouterr()
    _train(tmp_path)
    err = capsys.readouterr().err
    assert "resuming" not in err and "finished" in err, err
    assert f"{out / 'results.json'}" in err and f"fastrft eval {out}" in err, err
    assert evaluations == []
    lock = out / ".lock"  # the rerun held the lock, and wrote itself in as its holder
    assert {**_files(out), lock: None} == {**before, lock: None}
    results = Trainer(load_config([], [*TINY, f"out_dir={out}"]), progress=False).fit()
    assert results == json.loads((out / "results.json").read_text()) and evaluations == []


def test_a_resume_from_prev_says_so_and_keeps_it(tmp_path, capsys):
    """last.pt unreadable: the run resumes from prev.pt, says so, and its next save keeps
    prev.pt (it used to move the corrupt last.pt over it, leaving nothing readable)."""
    out = _train(tmp_path, "epochs=2")
    (out / "results.json").unlink()
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    capsys.readouterr()
    _train(tmp_path, "epochs=2")
    err = capsys.readouterr().err
    assert re.search(r"warning: .*last\.pt.* is empty.*falling back to .*prev\.pt \(epoch 0\)", err)
    assert load_checkpoint(out / "checkpoints" / "prev.pt")["epoch"] == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1


def test_other_config_in_same_run_dir_is_refused(tmp_path):
    _train(tmp_path, "epochs=1")
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, "epochs=2")
    assert exit_info.value.code == 2


def _paused(tmp_path, cmd):
    """The `fastrft train` command ``cmd`` run until it pauses for good after its first
    checkpoint and one more step (so a kill lands mid-epoch whatever the machine's speed)."""
    paused = tmp_path / "paused"
    driver = [sys.executable, "-m", "tests.engine.paused_train", str(paused), *cmd[4:]]
    proc = subprocess.Popen(driver, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not paused.exists() and proc.poll() is None:
        time.sleep(0.05)
    if not paused.exists():
        _, err = proc.communicate()
        pytest.fail(f"the paused run ended before its pause: {err.decode()[-2000:]}")
    return proc


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_directory_in_use_is_refused_until_its_holder_dies(tmp_path):
    """A second run on an out_dir a run is using exits 75 (EXIT_BUSY: not bad input, so a
    sweep tries it again) naming the holder, and touches nothing there; the lock dies with its
    holder (SIGKILL included)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastrft", "train", "--no-progress", *TINY, f"out_dir={out}"]
    holder = _paused(tmp_path, cmd)
    before = _files(out)
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == EXIT_BUSY == 75, second.stderr[-2000:]
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"pid {holder.pid} on {socket.gethostname()}" in second.stderr, second.stderr
    assert _files(out) == before
    _kill(holder)
    subprocess.run(cmd, check=True, capture_output=True)
    assert (out / "results.json").exists()


@pytest.mark.parametrize(
    ("change", "expected", "config_yaml"),
    [
        ("optim.lr=1e-3", r"optim\.lr is 0\.003 in the run, 0\.001 here", "deleted"),
        ("epochs=2", r"epochs is 1 in the run, 2 here .*learning-rate", "kept"),
    ],
)
def test_a_resume_under_another_config_names_what_differs(
    tmp_path, capsys, change, expected, config_yaml
):
    """The checkpoint's own config is the reference: without config.yaml, a run under another
    config is still refused (it used to resume), and the refusal names the keys and values."""
    out = _train(tmp_path, "epochs=1")
    if config_yaml == "deleted":
        (out / "config.yaml").unlink()
    before = _files(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, "epochs=1", change)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(expected, err), err
    lock = out / ".lock"  # the refused run held the lock, and wrote itself in as its holder
    assert {**_files(out), lock: None} == {**before, lock: None}


def test_resume_after_sigkill_gives_the_same_result(tmp_path):
    """Kill a run mid-epoch with SIGKILL, rerun the same command: the final metrics equal
    those of an uninterrupted run."""
    args = [*TINY, "epochs=4", "data.toy_samples=512", "schedule.name=fix"]
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-m", "fastrft", "train", "--no-progress", *args, f"out_dir={whole}"],
        check=True,
        capture_output=True,
    )
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "fastrft", "train", "--no-progress", *args, f"out_dir={cut}"]
    _kill(_paused(tmp_path, cmd))
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["epoch"] == 0
    assert not (cut / "results.json").exists()
    subprocess.run(cmd, check=True, capture_output=True)
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert a["accuracy_curve"] == b["accuracy_curve"]
    assert _records(whole) == [
        dict(r, images_per_s=x["images_per_s"], epoch_s=x["epoch_s"])
        for r, x in zip(_records(cut), _records(whole), strict=True)
    ]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config([], [*TINY, f"out_dir={tmp_path / 'nan'}", "schedule.name=fix"])
    trainer = Trainer(cfg, progress=False)
    original = trainer.objective.loss

    def poisoned(model, x, y, x_adv):
        loss, logits = original(model, x, y, x_adv)
        return (loss * float("nan") if len(trainer.history) == 1 else loss), logits

    monkeypatch.setattr(trainer.objective, "loss", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"non-finite at epoch 1.*Last good checkpoint: epoch 0"
    ):
        trainer.fit()
    assert load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")["epoch"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack.eps=-1"], "attack.eps: must be >= 0"),
        (["schedule.t1=3", "schedule.t2=1"], "schedule.t1: must not come after"),
        (["data.source=imagefolder", "data.root=/no/such/dir"], "data.root:"),
        (["attack.epz=1"], "unknown key"),
        (["speed.graph_step=true"], "speed.graph_step: capturing the whole step needs"),
        (["speed.graph_step=maybe"], "speed.graph_step: must be true, false or auto"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, args, message):
    run = subprocess.run(
        [sys.executable, "-m", "fastrft", "train", *TINY, *args, f"out_dir={tmp_path / 'x'}"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "x").exists(), "nothing should be created for a bad config"


@pytest.mark.slow
def test_ddp_with_two_gloo_processes(tmp_path):
    """Two ranks train, and share the final curve: each attacks its half of the 48
    validation images and results.json has the whole set's numbers, those `fastrft eval`
    gives in one process (one thread per process in both, torchrun's default for 2)."""
    out = tmp_path / "ddp"
    run = torchrun("-m", "fastrft", "train", "--no-progress", *TINY, "epochs=2", f"out_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    records = _records(out)
    assert [r["epoch"] for r in records] == [0, 1]
    # two ranks each see half of the 192 images: 3 steps of 32 per epoch per rank
    assert torch.tensor([r["train_acc"] for r in records]).isfinite().all()
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["num_samples"] == 48
    alone = tmp_path / "alone.json"
    args = ("-m", "fastrft", "eval", str(out), "--no-progress", "--out", str(alone))
    run = torchrun(*args, nproc=1, env={"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    one = json.loads(alone.read_text())
    assert one["processes"] == 1 and one["accuracy_curve"] == results["accuracy_curve"]
    # one process: a batch of 48 per bisection round; two: a batch of 24 each
    assert results["strategy"] == "bisect"
    assert (one["attack_calls"], results["attack_calls"]) == (3, 6)


@pytest.mark.slow
def test_ddp_ranks_make_as_many_steps_where_the_images_split_unevenly(tmp_path):
    """191 training images on 2 ranks: shards of 96 and 95 images used to make 3 and 2
    batches of 32, and the ranks then waited on each other's collectives for ever. The
    timeout is only a safety net."""
    out = tmp_path / "ddp"
    args = [*TINY, "epochs=2", "data.toy_samples=191", f"out_dir={out}"]
    run = torchrun(
        "-m",
        "tests.engine.counted_train",
        str(tmp_path),
        "--no-progress",
        *args,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    counts = [json.loads((tmp_path / f"steps.{rank}.json").read_text()) for rank in (0, 1)]
    assert counts == [[3, 3], [3, 3]]
    assert [r["epoch"] for r in _records(out)] == [0, 1]


def test_an_explicit_gpu_must_exist_and_is_not_for_torchrun(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device: cuda:3, but 1 GPU\(s\) are visible"):
        pick_device("cuda:3", Dist())
    with pytest.raises(ConfigError, match="under torchrun: each process takes its own GPU"):
        pick_device("cuda:0", Dist(rank=0, world_size=2))
