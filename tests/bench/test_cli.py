"""`fastrft bench` end to end on the CPU: the ladder, the limit, the files, the errors."""

import csv
import json
import re
import subprocess
import sys
import types

import pytest
import torch

from fastrft.bench import ladder as ladder_module
from fastrft.bench import train
from fastrft.bench.cli import main
from fastrft.bench.ladder import training_step
from fastrft.engine.graphs import CaptureFailed

TINY = ["--preset", "tiny", "--no-compile", "--iters", "1", "--repeats", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    files = ["--json", str(out / "r.json"), "--csv", str(out / "r.csv")]
    assert main([*TINY, *files, "--markdown", str(out / "r.md"), "--profile"]) == 0
    return json.loads((out / "r.json").read_text()), out


def test_ladder_rows_limit_and_files(ladder):
    result, out = ladder
    rows = result["rows"]
    # 0 twice (PyTorch's defaults, strict fp32); 5: --no-compile, 6-7: no GPU
    assert [r["rung"] for r in rows] == [0, 0, 1, 2, 3, 4]
    assert result["skipped"] == [
        "rung 5 skipped: --no-compile",
        "rung 6 skipped: CUDA graphs need a CUDA GPU",
        "rung 7 skipped: CUDA graphs need a CUDA GPU",
    ]
    base = rows[0]["images_per_s"]
    floor = result["limit"]["floor_ms"]
    lim = result["limit"]
    assert floor == pytest.approx(lim["t_train_ms"] + 2 * lim["t_grad_ms"])  # PGD-2, madry
    for r in rows:
        assert r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["images_per_s"] == pytest.approx(16 / (r["median_ms"] / 1e3))
        assert r["speedup"] == pytest.approx(r["images_per_s"] / base)
        assert r["fraction_of_limit"] == pytest.approx(floor / r["median_ms"])
        assert r["warmup_s"] > 0
        assert r["mean_power_w"] is None and r["peak_memory_gib"] is None  # no GPU here
    env = result["environment"]
    assert env["device"].startswith("cpu") and env["torch"] and env["command"]
    assert result["workload"]["model"] == "tiny_cnn" and result["workload"]["steps"] == 2
    with (out / "r.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["rung"]) for r in table] == [0, 0, 1, 2, 3, 4]
    assert float(table[2]["images_per_s"]) == pytest.approx(rows[2]["images_per_s"])
    md = (out / "r.md").read_text()
    assert env["device"] in md and env["torch"] in md and env["command"] in md
    precision, matmul_tf32 = torch.get_float32_matmul_precision(), env["matmul_allow_tf32"]
    assert f"matmul precision {precision} (matmul TF32 {'allowed' if matmul_tf32 else 'off'})" in md
    # two tables, each with a header and a separator line
    assert md.count("\n| ") == len(rows) + 2 + len(result["profile"]) + 2


def test_a_rung_torch_cannot_capture_is_a_note_and_the_ladder_goes_on(tmp_path, monkeypatch):
    real = train.run_rung

    def run_rung(rung, w, **kw):
        if rung.index == 1:
            raise CaptureFailed("operation not permitted when stream is capturing")
        return real(rung, w, **kw)

    monkeypatch.setattr(train, "run_rung", run_rung)
    assert main([*TINY, "--rungs", "0-2", "--no-limit", "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert [row["rung"] for row in r["rows"]] == [0, 0, 1, 2]  # 0: defaults, strict fp32
    failed = "torch could not capture its graph (operation not permitted when stream is capturing)"
    assert r["rows"][2]["error"] == failed and "median_ms" not in r["rows"][2]
    assert r["skipped"] == [f"rung 1 failed: {failed}"]
    assert r["rows"][3]["speedup"] is not None and r["complete"]


def test_each_rung_is_on_disk_before_the_next_and_an_error_ends_with_the_rows_so_far(
    tmp_path, monkeypatch
):
    real, out = train.run_rung, tmp_path / "r.json"
    on_disk = {}

    def run_rung(rung, w, **kw):
        on_disk[rung.index] = (
            [row["rung"] for row in json.loads(out.read_text())["rows"]] if (out.exists()) else None
        )
        if rung.index == 1:
            raise RuntimeError("a bug in rung 1")
        return real(rung, w, **kw)

    def measure_limit(*args, **kwargs):
        raise RuntimeError("the limit broke")

    monkeypatch.setattr(train, "run_rung", run_rung)
    monkeypatch.setattr(train, "measure_limit", measure_limit)
    files = [
        "--json",
        str(out),
        "--csv",
        str(tmp_path / "r.csv"),
        "--markdown",
        str(tmp_path / "r.md"),
    ]
    with pytest.raises(RuntimeError, match="the limit broke"):
        main([*TINY, "--rungs", "0-2", *files])
    assert on_disk == {0: [0], 1: [0, 0], 2: [0, 0, 1]}  # rung 0 twice: defaults, strict fp32
    r = json.loads(out.read_text())
    assert [row["rung"] for row in r["rows"]] == [0, 0, 1, 2]
    assert r["rows"][2]["error"] == "RuntimeError: a bug in rung 1"
    assert "rung 1 failed: RuntimeError: a bug in rung 1" in r["skipped"]
    assert r["error"] == "RuntimeError: the limit broke" and r["complete"] is False
    with (tmp_path / "r.csv").open() as f:
        assert [int(row["rung"]) for row in csv.DictReader(f)] == [0, 0, 1, 2]
    assert "a bug in rung 1" in (tmp_path / "r.md").read_text()


def test_profile_lists_the_top_rungs_operators(ladder):
    ops = ladder[0]["profile"]
    assert 0 < len(ops) <= 12
    shares = [op["share"] for op in ops]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9
    # the top rung of a convnet step spends its time in convolutions, forward or backward
    assert any("conv" in op["op"] for op in ops[:4]), [op["op"] for op in ops]


def test_compare_with_an_earlier_result(ladder, tmp_path, capsys):
    old, _ = ladder
    for r in old["rows"]:
        r["images_per_s"] /= 2  # an earlier run at half the speed
    (tmp_path / "old.json").write_text(json.dumps(old))
    main(
        [
            *TINY,
            "--rungs",
            "0,3",
            "--no-limit",
            "--compare",
            str(tmp_path / "old.json"),
            "--json",
            str(tmp_path / "new.json"),
        ]
    )
    new = json.loads((tmp_path / "new.json").read_text())
    before = {r["name"]: r["images_per_s"] for r in old["rows"]}
    assert [r["rung"] for r in new["rows"]] == [0, 0, 3]
    for r in new["rows"]:
        assert r["vs_old"] == pytest.approx(r["images_per_s"] / before[r["name"]])
    assert new["limit"] is None
    assert "old.json" in capsys.readouterr().out


def test_projection_of_a_paper_run(tmp_path):
    main(
        [
            *TINY,
            "--rungs",
            "0",
            "images=1000",
            "epochs=10",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    r = json.loads((tmp_path / "p.json").read_text())
    p, top, lim = r["projection"], r["rows"][-1], r["limit"]
    epoch = 1000 / top["images_per_s"]
    assert p["clean_epochs"] == 2  # 12/50 of 10 epochs, rounded
    assert p["fix_s"] == pytest.approx(10 * epoch)
    clean_epoch = 1000 / (16 / (lim["t_train_ms"] / 1e3))
    assert p["hinge_s"] == pytest.approx(2 * clean_epoch + 8 * epoch)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.name=no_such_model_xyz"], "no_such_model_xyz"),
        (["--rungs", "6"], "CUDA graphs need a CUDA GPU"),
        (["--rungs", "0,7"], "rung 7 cannot run here (CUDA graphs need a CUDA GPU)"),
        (["--rungs", "9"], "rung 9 does not exist"),
        (["--rungs", "a-b"], "expected numbers and ranges"),
        (["objective.name=trades", "attack.name=apgd"], "set attack.name=pgd"),
        (["data.batch_size=0"], "data.batch_size: must be at least 1"),
        (["attack.eps=-1"], "must be >= 0"),
        (["--compare", "missing.json"], "missing.json does not exist"),
    ],
)
def test_bad_input_names_the_flag(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        main([*TINY, *args, "--json", "out.json"])
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bad_input_from_the_command_line_is_one_line_and_exit_2(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "fastrft", "bench", *TINY, "device=cuda"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("fastrft bench: error: device: CUDA was asked for but no GPU")
    assert len(run.stderr.strip().splitlines()) == 1


def test_attack_mode_side_by_side_with_peers(tmp_path):
    pytest.importorskip("torchattacks")
    pytest.importorskip("pyautoattack")
    main(
        [
            "--mode",
            "attack",
            *TINY,
            "attack.name=apgd",
            "attack.steps=3",
            "model.name=small_cnn",
            "--json",
            str(tmp_path / "a.json"),
        ]
    )
    rows = json.loads((tmp_path / "a.json").read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names[0] == "fastrft fp32 eager" and names[1].startswith("fastrft fast path")
    assert names[2:4] == ["torchattacks APGD", "AutoAttack APGD-CE"]
    for r in rows[:4]:
        assert 0.0 <= r["robust_acc"] <= 1.0
        for peer in rows[2:4]:
            ratio = r[f"x {peer['name']}"]
            assert ratio == pytest.approx(r["images_per_s"] / peer["images_per_s"])


def test_attack_mode_times_the_curve_by_each_strategy(tmp_path, capsys):
    """Budgets 1..4/255 at 2 steps on one batch: "all" attacks 4 times, bisection 3; each
    curve's accuracy at the budget is the share its attacks leave correct."""
    out = tmp_path / "c.json"
    args = ["attack.name=apgd", "attack.steps=2", "attack.eps=4/255", "--json", str(out)]
    main(["--mode", "attack", *TINY, *args])
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    every, bisect = (
        rows["fastrft curve, all (4 budgets)"],
        rows["fastrft curve, bisect (4 budgets)"],
    )
    assert (every["gradient_passes"], bisect["gradient_passes"]) == (8, 6)
    assert all(0 <= r["robust_acc"] <= 1 and r["images_per_s"] > 0 for r in (every, bisect))
    assert not any(k.startswith("x ") for k in every), "a curve is no single attack's peer"
    assert "curve rows: images per second whose whole" in capsys.readouterr().out


def test_attack_mode_keeps_each_row_on_disk_and_an_error_ends_with_the_rows_so_far(
    tmp_path, monkeypatch
):
    from fastrft.bench import attack

    real, out = attack.time_variant, tmp_path / "a.json"
    on_disk = []

    def time_variant(v, *args):
        on_disk.append(
            [r["name"] for r in json.loads(out.read_text())["rows"]] if out.exists() else None
        )
        if len(on_disk) == 2:
            raise RuntimeError("a bug in the fast path")
        return real(v, *args)

    monkeypatch.setattr(attack, "time_variant", time_variant)
    files = ["--json", str(out), "--markdown", str(tmp_path / "a.md")]
    with pytest.raises(RuntimeError, match="a bug in the fast path"):
        main(["--mode", "attack", *TINY, "attack.name=apgd", "attack.steps=2", *files])
    assert on_disk == [None, ["fastrft fp32 eager"]], "the first row on disk before the second"
    r = json.loads(out.read_text())
    assert [row["name"] for row in r["rows"]] == ["fastrft fp32 eager"]
    assert r["error"] == "RuntimeError: a bug in the fast path" and r["complete"] is False
    assert r["skipped"] == ["ended by RuntimeError: a bug in the fast path"]
    assert "fastrft fp32 eager" in (tmp_path / "a.md").read_text()


def test_attack_mode_runs_fgsm_beside_torchattacks_ffgsm(tmp_path):
    """fgsm's eager row once passed norm twice (a TypeError before any row was timed)."""
    pytest.importorskip("torchattacks")
    out = tmp_path / "f.json"
    args = ["attack.name=fgsm", "model.name=small_cnn", "--json", str(out)]
    main(["--mode", "attack", *TINY, *args])
    names = [r["name"] for r in json.loads(out.read_text())["rows"]]
    assert names[0] == "fastrft fp32 eager" and names[2:] == ["torchattacks FFGSM"], "no curve"


def test_an_out_of_memory_rung_names_the_largest_batch_searched_after_freeing_it(monkeypatch):
    real = train.run_rung
    searched = []

    def run_rung(rung, w, **kw):
        if rung.index == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(rung, w, **kw)

    def largest_batch_that_fits(rung, w):
        # the failed rung's traceback (and the memory its frames hold) is gone by now
        searched.append((rung.index, sys.exc_info()[0]))
        return 8

    monkeypatch.setattr(train, "run_rung", run_rung)
    monkeypatch.setattr(train, "largest_batch_that_fits", largest_batch_that_fits)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device: types.SimpleNamespace(total_memory=80 * 2**30),
    )
    message = (
        "batch 16 does not fit in the GPU's 80 GiB at rung 1 (+ bf16 autocast): "
        "the largest that fit: 8; rerun with data.batch_size=8"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        main([*TINY, "--rungs", "0-2", "--no-limit"])
    assert searched == [(1, None)]


def test_the_limit_is_timed_before_the_capturing_rungs_and_none_captures_after_a_refusal(
    tmp_path, monkeypatch
):
    real_rung, real_limit, calls = train.run_rung, train.measure_limit, []

    def run_rung(rung, w, **kw):
        calls.append(rung.index)
        if rung.index == 6:
            raise CaptureFailed("operation not permitted when stream is capturing")
        return real_rung(rung, w, **kw)

    def measure_limit(*args, **kwargs):
        calls.append("limit")
        return real_limit(*args, **kwargs)

    monkeypatch.setattr(train, "runnable", lambda rung, device: None)  # rungs 6-7 on the CPU
    monkeypatch.setattr(train, "run_rung", run_rung)
    monkeypatch.setattr(train, "measure_limit", measure_limit)
    assert main([*TINY, "--rungs", "0,6,7", "--json", str(tmp_path / "r.json")]) == 0
    assert calls == [0, 0, "limit", 6]  # rung 7 is never built in the process rung 6 left
    r = json.loads((tmp_path / "r.json").read_text())
    assert [row["rung"] for row in r["rows"]] == [0, 0, 6, 7]
    assert r["rows"][3]["skipped"] == "a capture was refused earlier in this process (rung 6)"
    assert r["skipped"] == [
        train.ORDER_NOTE,
        "rung 6 failed: torch could not capture its graph "
        "(operation not permitted when stream is capturing)",
        "rung 7 skipped: a capture was refused earlier in this process (rung 6)",
    ]


def tf32() -> tuple[str, bool, bool]:
    return (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )


@pytest.fixture
def tf32_on():
    before = tf32()
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    yield tf32()
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.allow_tf32 = before[2]


def test_a_strict_fp32_baseline_row_beside_the_defaults_row(tf32_on, tmp_path, monkeypatch):
    real, seen = train.run_rung, []

    def run_rung(rung, w, **kw):
        result = real(rung, w, **kw)
        seen.append((rung.index, kw.get("strict", False), tf32()))
        return result

    def build(rung, w):  # the flags as the step is built and timed, inside run_rung
        seen.append(("built", rung.index, tf32()))
        return training_step(rung, w)

    monkeypatch.setattr(train, "run_rung", run_rung)
    monkeypatch.setattr(ladder_module, "training_step", build)
    out = ["--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    assert main([*TINY, "--rungs", "0-1", "--no-limit", *out]) == 0
    assert tf32() == tf32_on == ("high", True, True)  # restored after the strict row
    assert seen == [
        ("built", 0, tf32_on),
        (0, False, tf32_on),
        ("built", 0, ("highest", False, False)),
        (0, True, tf32_on),
        ("built", 1, tf32_on),
        (1, False, tf32_on),
    ]
    r = json.loads((tmp_path / "r.json").read_text())
    rows = r["rows"]
    assert [(row["rung"], row["strict_fp32"]) for row in rows] == [
        (0, False),
        (0, True),
        (1, False),
    ]
    assert rows[1]["name"] == "eager fp32, TF32 off (strict baseline)"
    assert rows[2]["speedup_strict"] == pytest.approx(
        rows[2]["images_per_s"] / rows[1]["images_per_s"]
    )
    env = r["environment"]
    assert (env["float32_matmul_precision"], env["matmul_allow_tf32"], env["cudnn_allow_tf32"]) == (
        "high",
        True,
        True,
    )
    md = (tmp_path / "r.md").read_text()
    assert "matmul TF32 allowed), cuDNN TF32 allowed" in md and "TF32 off (strict" in md
