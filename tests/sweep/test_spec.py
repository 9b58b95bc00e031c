"""SWEEP.yaml: expansion into runs with stable ids, the shipped sweeps, and every kind of bad
sweep file refused with a one-line error before anything starts."""

from itertools import product

import pytest

from fastrft.cli import main
from fastrft.config import load_config
from fastrft.sweep.spec import MAX_ID, check_runs, load_spec

from .helpers import CONFIGS, TINY, write_sweep

PAPER_BACKBONES = sorted(p.stem for p in (CONFIGS / "paper" / "backbones").glob("*.yaml"))
PAPER_DATASETS = sorted(p.stem for p in (CONFIGS / "paper" / "datasets").glob("*.yaml"))


def test_grid_expands_in_order_with_readable_stable_ids(tmp_path):
    path = write_sweep(
        tmp_path,
        {"attack.eps": ["4/255", "8/255"], "schedule.name": ["fix", "hinge"]},
        seeds=[0, 1],
    )
    runs = load_spec(path).runs()
    assert [r.id for r in runs][:3] == [
        "attack.eps=4_255,schedule.name=fix,seed=0",
        "attack.eps=4_255,schedule.name=fix,seed=1",
        "attack.eps=4_255,schedule.name=hinge,seed=0",
    ]
    assert len({r.id for r in runs}) == 8
    assert [r.id for r in load_spec(path).runs()] == [r.id for r in runs]
    last = runs[-1]
    assert last.overrides[-3:] == ("attack.eps=8/255", "schedule.name=hinge", "seed=1")
    cfg = load_config(last.files, [*last.overrides, f"out_dir={tmp_path / last.id}"])
    assert cfg.attack.eps == pytest.approx(8 / 255) and cfg.seed == 1
    assert cfg.epochs == TINY["epochs"] and cfg.schedule.name == "hinge"


def test_variant_axes_add_files_or_keys(tmp_path):
    extra = tmp_path / "long.yaml"
    extra.write_text("optim: {min_lr_ratio: 0.5}\n")
    path = write_sweep(
        tmp_path,
        {
            "length": {"long": "long.yaml", "short": {"optim": {"lr": 0.5}}},
            "optim.betas": [[0.9, 0.99]],
        },
        overrides={},
    )
    long_run, short_run = load_spec(path).runs()
    assert long_run.id == "length=long,optim.betas=0.9_0.99"
    assert long_run.files[-1] == extra.resolve()
    assert short_run.overrides[-2:] == ("optim.lr=0.5", "optim.betas=[0.9, 0.99]")
    cfg = load_config(short_run.files, short_run.overrides)
    assert cfg.optim.lr == 0.5 and tuple(cfg.optim.betas) == (0.9, 0.99)
    assert load_config(long_run.files, long_run.overrides).optim.min_lr_ratio == 0.5


def test_long_and_clashing_ids_end_in_a_hash(tmp_path):
    path = write_sweep(
        tmp_path, {"attack.eps": ["4/255", "4_255"], "model.name": ["x" * 2 * MAX_ID]}
    )
    ids = [r.id for r in load_spec(path).runs()]
    assert len(set(ids)) == 2 and all(len(i) <= MAX_ID for i in ids)
    assert ids[0].startswith("attack.eps=4_255,model.name=xxx") and ids[0][-9] == "-"


def test_fingerprint_follows_the_base_config_not_the_grid(tmp_path):
    a = load_spec(write_sweep(tmp_path, {"seed": [0]})).fingerprint()
    assert load_spec(write_sweep(tmp_path, {"seed": [0, 1, 2]})).fingerprint() == a
    changed = load_spec(write_sweep(tmp_path, {"seed": [0]}, overrides={"epochs": 5}))
    assert changed.fingerprint() != a


def test_shipped_toy_sweep_runs_every_cell():
    spec = load_spec(CONFIGS / "sweeps" / "toy.yaml")
    runs = spec.runs()
    check_runs(spec, runs)
    assert len(runs) == 8 and spec.tune is None


def test_shipped_paper_sweep_is_the_papers_grid_with_a_search_per_backbone_and_dataset(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("FASTRFT_DATA", str(tmp_path))
    for name in PAPER_DATASETS:
        (tmp_path / name).mkdir()
    spec = load_spec(CONFIGS / "sweeps" / "paper.yaml", root=tmp_path / "runs")
    runs, searches = spec.runs(), spec.searches()
    assert len(runs) == 120 and len(searches) == 30
    assert all(s.overrides[-1] == "schedule.name=fix" for s in searches)
    for search in searches:  # as if `--tune` had run
        search.best.parent.mkdir(parents=True)
        search.best.write_text("optim: {lr: 0.002, weight_decay: 0.01}\n")
    # every cell loads (tests/test_shipped_configs.py loads all 120); a sample, with the tuning
    check_runs(spec, runs[::12])
    cells = {(run.files[1].stem, run.files[2].stem, *run.overrides) for run in runs}
    assert cells == set(
        product(
            PAPER_BACKBONES,
            PAPER_DATASETS,
            ("attack.eps=4/255", "attack.eps=8/255"),
            ("schedule.name=fix", "schedule.name=hinge"),
        )
    )
    for run in runs:
        best = spec.search_for(run.cell).best
        assert run.files[-1] == best and f"dataset={run.files[2].stem}" in str(best)
    cfg = load_config(runs[-1].files, runs[-1].overrides)
    assert cfg.optim.lr == 0.002 and cfg.epochs == 50 and cfg.schedule.name == "hinge"


def _fails(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", *map(str, argv)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists(), "nothing may start on bad input"


@pytest.mark.parametrize(
    ("grid", "extra", "message"),
    [
        (
            {"attack.epz": [1]},
            {},
            "grid key 'attack.epz' is not a config key; did you mean 'attack.eps'",
        ),
        ({}, {}, "the grid is empty"),
        ({"seed": []}, {}, "grid key 'seed' has no values"),
        ({"schedule.name": ["fix", "fix"]}, {}, "lists 'fix' twice"),
        ({"attack.eps": ["-1"]}, {}, "run attack.eps=-1: attack.eps: must be >= 0"),
        (
            {"schedule.name": ["fix", "foo"]},
            {},
            "run schedule.name=foo: schedule.name: must be one of fix, hinge",
        ),
        ({"seed": [0]}, {"overrides": {"optim.lrr": 1}}, "'optim.lrr' is not a config key"),
        ({"seed": [0]}, {"configs": ["nope.yaml"]}, "config file 'nope.yaml' not found"),
        ({"seed": [0]}, {"gird": 1}, "unknown top-level key 'gird'"),
        ({"b": {"x": "missing.yaml"}}, {}, "grid b.x: config file 'missing.yaml' not found"),
        ({"seed": [0]}, {"tune": {"per": ["backbone"]}}, "tune.per names 'backbone'"),
        ({"optim.lr": [0.1]}, {"tune": {}}, "tune.space optim.lr is also set by"),
        ({"seed": [0]}, {"tune": {"metric": "acc"}}, "tune.metric must be one of"),
        ({"seed": [0]}, {"tune": {"samples": 0}}, "tune.samples must be an integer >= 1"),
        ({"seed": [0]}, {"tune": {"space": {"optim.lr": [1, 0.1]}}}, "0 < low < high"),
        ({"seed": [0]}, {"tune": {}}, "needs the tuned config"),
    ],
)
def test_bad_sweep_is_one_line_before_anything_starts(capsys, tmp_path, grid, extra, message):
    path = write_sweep(tmp_path, grid, **extra)
    _fails(capsys, tmp_path, [path], message)


def test_bad_options_and_missing_file(capsys, tmp_path):
    _fails(capsys, tmp_path, [tmp_path / "none.yaml"], "sweep file")
    path = write_sweep(tmp_path, {"seed": [0]})
    _fails(capsys, tmp_path, [path, "--jobs", "0"], "--jobs must be at least 1")
    _fails(capsys, tmp_path, [path, "--address", "1.2.3.4:1"], "add --backend ray")
    _fails(capsys, tmp_path, [path, "--tune"], "has no tune: section")


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9", "nonsense"])
def test_unreachable_ray_address_is_refused_before_anything_starts(capsys, tmp_path, address):
    path = write_sweep(tmp_path, {"seed": [0]})
    expected = "expected HOST:PORT" if address == "nonsense" else "is unreachable"
    _fails(capsys, tmp_path, [path, "--backend", "ray", "--address", address], expected)
