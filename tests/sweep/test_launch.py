"""How runs are placed and launched: slots per GPU (or group of GPUs, trained with DDP under
torchrun) or per CPU job, and each run's command line."""

import sys
from pathlib import Path

import pytest

from fastrft.sweep.launch import train_command
from fastrft.sweep.local import local_slots
from fastrft.sweep.spec import Run


def test_one_slot_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    slots = local_slots(jobs=None, gpus_per_run=None)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert {s.nproc for s in slots} == {1}
    assert len(local_slots(jobs=2, gpus_per_run=None)) == 2


def test_multi_gpu_runs_get_disjoint_groups(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7,8")
    slots = local_slots(jobs=None, gpus_per_run=2)
    assert [(s.env["CUDA_VISIBLE_DEVICES"], s.nproc) for s in slots] == [("4,5", 2), ("6,7", 2)]
    with pytest.raises(ValueError, match="--gpus-per-run 6, but only 5 GPU"):
        local_slots(jobs=None, gpus_per_run=6)


def test_cpu_jobs_share_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    slots = local_slots(jobs=4, gpus_per_run=None)
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}] * 4
    assert len(local_slots(jobs=None, gpus_per_run=None)) == 1
    with pytest.raises(ValueError, match="no GPU is visible"):
        local_slots(jobs=None, gpus_per_run=1)


def test_commands_train_one_process_or_torchrun():
    run = Run("seed=0", (("seed", "0"),), (Path("/c/base.yaml"),), ("seed=0",))
    single = train_command(run, Path("/r/seed=0"))
    assert single == (
        sys.executable,
        "-m",
        "fastrft",
        "train",
        "--no-progress",
        "/c/base.yaml",
        "seed=0",
        "out_dir=/r/seed=0",
    )
    ddp = train_command(run, Path("/r/seed=0"), nproc=4)
    assert ddp[:6] == (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
    )
    assert ddp[6:] == single[1:]
