"""`fastrft report` on run directories written by the test, with known numbers: the paper's
table (missing cells as missing, seeds averaged), win counts and the paired t-test against
scipy, the CSV, the figures, a sweep's ledger, and bad input."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from scipy.stats import ttest_rel

from fastrft.cli import main
from fastrft.sweep.ledger import Ledger

RESNET, VIT = "resnet50.a1_in1k", "vit_base_patch16_224.augreg_in1k"


def _run(
    root: Path,
    name: str,
    *,
    model=RESNET,
    dataset="cars",
    eps=4,
    method="fix",
    seed=0,
    lr=1e-3,
    results=None,
    strategy=None,
) -> Path:
    """A run directory as `fastrft train` leaves it; ``results`` = (clean, adv, E.adv) or None
    for a run that has not finished; ``strategy`` None: a results.json older than the key."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {
        "epochs": 2,
        "seed": seed,
        "out_dir": str(folder),
        "model": {"name": model},
        "data": {"source": "imagefolder", "root": f"/data/{dataset}"},
        "attack": {"eps": eps / 255},
        "schedule": {"name": method, "t1": None, "t2": None, "per_step": False},
        "optim": {"lr": lr},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = [{"epoch": e, "val_clean_acc": 0.3 + 0.1 * e, "val_adv_acc": 0.1 * e} for e in (0, 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if results is not None:
        clean, adv, e_adv = results
        grid = [k / 255 for k in range(eps + 1)]
        curve = [clean + (adv - clean) * k / eps for k in range(eps + 1)]
        (folder / "results.json").write_text(
            json.dumps(
                {
                    "clean_acc": clean,
                    "adv_acc": adv,
                    "expected_robustness": e_adv,
                    "eps": eps / 255,
                    "eps_grid": grid,
                    "accuracy_curve": curve,
                    "delay_time": 0,
                    "epochs": 2,
                    **({} if strategy is None else {"strategy": strategy}),
                }
            )
        )
    return folder


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    _run(root, "cars-fix-0", results=(0.60, 0.30, 0.45), seed=0)
    _run(root, "cars-fix-1", results=(0.70, 0.40, 0.55), seed=1)
    _run(root, "cars-hinge", method="hinge", results=(0.85, 0.43, 0.66))
    _run(root, "cub-fix", dataset="cub", results=(0.72, 0.42, 0.58))
    _run(root, "cub-hinge", dataset="cub", method="hinge")  # not finished
    _run(root, "dogs-fix", dataset="dogs", model=VIT, results=(0.62, 0.27, 0.44))
    _run(root, "dogs-hinge", dataset="dogs", model=VIT, method="hinge", results=(0.73, 0.24, 0.49))
    _run(root, "cars-fix-8", eps=8, results=(0.13, 0.06, 0.09))
    _run(root, "cars-hinge-8", eps=8, method="hinge", results=(0.70, 0.20, 0.40))
    return root


def _report(root: Path, out: Path) -> str:
    main(["report", str(root), "--out", str(out)])
    return (out / "report.md").read_text()


def test_paper_table_with_missing_cells_and_seed_means(runs, tmp_path):
    text = _report(runs, tmp_path / "out")
    assert "| backbone | dataset | fix | hinge |" in text
    assert "| resnet50 | cars | 65.00 / 35.00 / 50.00 (n=2) | 85.00 / 43.00 / 66.00 |" in text
    assert "| resnet50 | cub | 72.00 / 42.00 / 58.00 | — |" in text
    assert "| vit_base_patch16_224 | dogs | 62.00 / 27.00 / 44.00 | 73.00 / 24.00 / 49.00 |" in text
    assert "### eps = 8/255" in text and "| resnet50 | cars | 13.00 / 6.00 / 9.00 |" in text
    assert "0.00 / 0.00" not in text
    assert "| `cub-hinge` | unfinished |" in text


def test_win_counts_and_paired_t_test_match_scipy(runs, tmp_path):
    text = _report(runs, tmp_path / "out")
    fix, hinge = [0.50, 0.44], [0.66, 0.49]  # E.adv of cars (seed mean) and dogs at 4/255
    t, p = ttest_rel(hinge, fix)
    assert f"| 4/255 | hinge vs fix | E.adv | 2 of 2 | 0 | 0 | +10.50 | {t:.2f} | {p:.2g} |" in text
    t_adv, _ = ttest_rel([0.43, 0.24], [0.35, 0.27])
    assert f"| 4/255 | hinge vs fix | Adv | 1 of 2 | 0 | 1 | +2.50 | {t_adv:.2f} |" in text
    assert "| 8/255 | hinge vs fix | Clean | 1 of 1 | 0 | 0 | +57.00 | n/a | n/a |" in text


def test_csv_has_a_row_per_run_and_leaves_missing_numbers_empty(runs, tmp_path):
    _report(runs, tmp_path / "out")
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert len(rows) == 9
    assert rows["cars-fix-1"]["seed"] == "1" and float(rows["cars-fix-1"]["clean_acc"]) == 0.70
    assert rows["cub-hinge"]["clean_acc"] == "" and rows["cub-hinge"]["state"] == "unfinished"
    assert rows["dogs-hinge"]["method"] == "hinge" and rows["dogs-hinge"]["dataset"] == "dogs"


def test_a_bisected_curve_is_marked_in_its_cell_and_named_in_the_csv(tmp_path):
    root = tmp_path / "runs"
    _run(root, "cars-fix", results=(0.60, 0.30, 0.45), strategy="all")
    _run(root, "cars-hinge", method="hinge", results=(0.85, 0.43, 0.66), strategy="bisect")
    _run(root, "cub-fix", dataset="cub", results=(0.72, 0.42, 0.58))
    text = _report(root, tmp_path / "out")
    assert "| resnet50 | cars | 60.00 / 30.00 / 45.00 | 85.00 / 43.00 / 66.00\u2020 |" in text
    assert "\u2020: a run of the cell found its curve (so Adv and E.adv) by bisection" in text
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {r["run"]: r["strategy"] for r in csv.DictReader(f)}
    assert rows == {"cars-fix": "all", "cars-hinge": "bisect", "cub-fix": "all"}


def test_no_mark_where_every_curve_attacked_every_budget(runs, tmp_path):
    assert "\u2020" not in _report(runs, tmp_path / "out")


def test_figures_are_drawn_and_linked(runs, tmp_path):
    out = tmp_path / "out"
    text = _report(runs, out)
    for kind in ("curves", "training"):
        png = out / kind / "resnet50-cars-eps_4_255.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"({kind}/resnet50-cars-eps_4_255.png)" in text


def test_a_key_that_sets_runs_apart_becomes_a_column(tmp_path):
    root = tmp_path / "runs"
    for lr in (1e-3, 1e-4):
        for method, acc in (("fix", 0.5), ("hinge", 0.6)):
            _run(root, f"{method}-{lr}", method=method, lr=lr, results=(acc, acc / 2, acc / 1.5))
    text = _report(root, tmp_path / "out")
    assert "| backbone | dataset | optim.lr | fix | hinge |" in text
    assert "| resnet50 | cars | 0.0001 | 50.00 / 25.00 / 33.33 | 60.00 / 30.00 / 40.00 |" in text
    assert "E.adv | 2 of 2 |" in text and "| n/a | n/a |" in text  # equal gains: no spread


def test_timm_names_stay_whole_where_the_short_form_is_ambiguous(tmp_path):
    root = tmp_path / "runs"
    _run(root, "a", model="convnext_base.fb_in22k_ft_in1k", results=(0.5, 0.2, 0.3))
    _run(root, "b", model="convnext_base.clip_laion2b", results=(0.6, 0.2, 0.3))
    text = _report(root, tmp_path / "out")
    assert "| convnext_base.clip_laion2b | cars |" in text


def test_a_sweep_root_lists_runs_from_its_ledger(tmp_path):
    root = tmp_path / "sweep"
    _run(root, "seed=0", results=(0.5, 0.2, 0.3))
    (root / "seed=1").mkdir()  # queued, never started: no config yet
    _run(root / "elsewhere", "stray", results=(0.9, 0.9, 0.9))  # not one of the sweep's runs
    ledger = Ledger(root / "ledger.jsonl")
    ledger.append("seed=0", "done", attempt=1)
    ledger.append("seed=1", "failed", attempt=2, exit_code=1)
    text = _report(root, tmp_path / "out")
    assert "1 runs with results, 1 without" in text and "| `seed=1` | failed |" in text
    assert "90.00" not in text


@pytest.mark.parametrize("make", [False, True])
def test_no_runs_is_a_one_line_error(tmp_path, capsys, make):
    target = tmp_path / "empty"
    if make:
        target.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(target)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert ("holds no runs" if make else "not found") in err


@pytest.mark.parametrize("sweep", [True, False])
def test_a_corrupt_results_file_is_named_and_its_run_listed_as_unreadable(tmp_path, capsys, sweep):
    """Not "done" without numbers (the ledger's word) nor "unfinished": a warning line naming
    the file, the run listed as "results unreadable", the rest of the report as usual."""
    root = tmp_path / "sweep"
    _run(root, "seed=0", results=(0.5, 0.2, 0.3))
    bad = _run(root, "seed=1", seed=1, results=(0.6, 0.3, 0.4)) / "results.json"
    bad.write_text('{"clean_acc": 0.6, "adv_a')  # cut mid-write
    if sweep:
        ledger = Ledger(root / "ledger.jsonl")
        ledger.append("seed=0", "done", attempt=1)
        ledger.append("seed=1", "done", attempt=1)
    text = _report(root, tmp_path / "out")
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{bad}: unreadable" in err, err
    assert "| `seed=1` | results unreadable |" in text and "50.00 / 20.00 / 30.00" in text
    with open(tmp_path / "out" / "results.csv") as f:
        states = {row["run"]: row["state"] for row in csv.DictReader(f)}
    assert states == {"seed=0": "done", "seed=1": "results unreadable"}


def test_a_corrupt_config_yaml_is_named(runs, tmp_path, capsys):
    """A run directory whose config.yaml is garbled (an edit, a crash mid-write) used to end
    the report in a traceback."""
    broken = runs / "cub-hinge" / "config.yaml"
    broken.write_text("model: {name: [")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{broken}" in err and "not valid YAML" in err, err
    assert not (tmp_path / "out").exists()
