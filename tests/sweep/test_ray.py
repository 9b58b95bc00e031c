"""The Ray backend and the ASHA search, on a local Ray instance of two CPUs (started once for
the module, shut down after)."""

import json

import pytest
import yaml

from fastrft.cli import main
from fastrft.config import load_config
from fastrft.sweep.spec import load_spec

from .helpers import ledger, states, write_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_ray_backend_runs_each_run_as_a_task(tmp_path):
    path = write_sweep(tmp_path, {"schedule.name": ["fix", "hinge"]})
    root = tmp_path / "runs"
    main(["sweep", str(path), "--backend", "ray"])
    for run in ("schedule.name=fix", "schedule.name=hinge"):
        assert states(root, run) == ["queued", "running", "done"]
        results = json.loads((root / run / "results.json").read_text())
        done = next(r for r in ledger(root) if r["run"] == run and r["state"] == "done")
        assert done["results"]["clean_acc"] == results["clean_acc"]
    assert {r.get("backend") for r in ledger(root) if r["state"] == "running"} == {"ray"}
    assert ray.is_initialized(), "a Ray instance the sweep did not start must be left running"


def test_asha_search_writes_the_best_values_that_the_grid_then_loads(tmp_path, capsys):
    tune = {
        "fixed": {"schedule.name": "fix"},
        "samples": 3,
        "reduction_factor": 2,
        "space": {"optim.lr": [1.0e-3, 3.0e-2], "optim.weight_decay": [1.0e-4, 1.0e-2]},
    }
    path = write_sweep(tmp_path, {"schedule.name": ["fix", "hinge"]}, tune=tune)
    main(["sweep", str(path), "--tune"])
    spec = load_spec(path)
    best_file = spec.searches()[0].best
    best = yaml.safe_load(best_file.read_text())["optim"]
    assert 1e-3 <= best["lr"] <= 3e-2 and 1e-4 <= best["weight_decay"] <= 1e-2
    trials = sorted((best_file.parent / "trials").iterdir())
    assert len(trials) == 3
    for trial in trials:  # each trial trained RFT-fix and reported per epoch
        cfg = load_config([trial / "config.yaml"])
        assert cfg.schedule.name == "fix" and 1e-3 <= cfg.optim.lr <= 3e-2
        assert 1 <= len((trial / "metrics.jsonl").read_text().splitlines()) <= 2
    for run in spec.runs():  # fix and hinge both reuse the tuned values
        cfg = load_config(run.files, run.overrides)
        assert (cfg.optim.lr, cfg.optim.weight_decay) == (best["lr"], best["weight_decay"])
    main(["sweep", str(path), "--tune"])  # tuned already: skipped
    captured = capsys.readouterr()
    assert "already tuned" in captured.out + captured.err
