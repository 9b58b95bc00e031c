"""Targets: each check says met, missed by how much, or why it could not be checked; the
preset's targets apply unless flags override them; bad target flags are one-line errors."""

import json
import re

import pytest

from fastrft.bench.cli import config_targets, main, parser, resolve_targets
from fastrft.bench.config import load_bench_config
from fastrft.bench.targets import attack_checks, train_checks

PROFILE = [
    {"op": "aten::convolution_backward", "share": 0.41},
    {"op": "aten::cudnn_convolution", "share": 0.22},
    {"op": "triton_poi_fused_0", "share": 0.05},
    {"op": "aten::copy_", "share": 0.01},
]


def _train_result(top_ips=450.0, fraction=0.8, fix_s=900.0, profile=None):
    return {
        "rows": [
            {"rung": 0, "images_per_s": 100.0, "fraction_of_limit": 0.2},
            {"rung": 7, "images_per_s": top_ips, "fraction_of_limit": fraction},
        ],
        "projection": {"fix_s": fix_s, "hinge_s": fix_s * 0.8},
        "profile": profile,
    }


def test_train_checks_say_met_or_by_how_much_missed():
    checks = train_checks(
        _train_result(profile=PROFILE), {"speedup": 5, "limit": 0.85, "minutes": 10}
    )
    speedup, limit, minutes = checks
    assert (speedup.met, speedup.got) == (False, "4.50x")
    assert speedup.verdict.startswith("missed by 10% (the top rung's time goes to ")
    assert "aten::convolution_backward 41%, aten::cudnn_convolution 22%, triton_poi" in (
        speedup.verdict
    )
    assert "aten::copy_" not in speedup.verdict  # the top three only
    assert (limit.met, limit.got) == (False, "80%") and limit.verdict.startswith(
        "missed by 5 points"
    )
    assert (minutes.met, minutes.got, minutes.verdict) == (False, "15.0 min", "over by 5.0 min")
    assert speedup.line() == f"target: rung 7 over the baseline >= 5x: 4.50x, {speedup.verdict}"

    met = train_checks(
        _train_result(600.0, 0.9, 300.0), {"speedup": 5, "limit": 0.85, "minutes": 10}
    )
    assert [c.met for c in met] == [True, True, True]
    assert [c.verdict for c in met] == ["met"] * 3


def test_train_checks_name_what_is_missing():
    result = _train_result()
    result["rows"] = result["rows"][1:]  # no baseline row
    result["rows"][0]["fraction_of_limit"] = None
    result["projection"] = None
    checks = train_checks(result, {"speedup": 5, "limit": 0.85, "minutes": 10})
    assert [c.met for c in checks] == [None, None, None]
    assert [c.verdict for c in checks] == [
        "needs rung 0 and a higher rung",
        "the limit was not measured",
        "no projection (set images and epochs)",
    ]
    assert checks[0].line().endswith(">= 5x: not checked, needs rung 0 and a higher rung")


def _attack_rows(fast_ips=1200.0, eager_ips=140.0, fast_acc=0.305, with_peer=True):
    rows = [
        {"name": "fastrft fp32 eager", "images_per_s": eager_ips, "robust_acc": 0.30},
        {"name": "fastrft fast path (cuda bf16)", "images_per_s": fast_ips, "robust_acc": fast_acc},
        {"name": "torchattacks APGD", "images_per_s": 80.0, "robust_acc": 0.31},
    ]
    if with_peer:
        rows.append({"name": "AutoAttack APGD-CE", "images_per_s": 100.0, "robust_acc": 0.29})
    return {"rows": rows}


def test_attack_checks_compare_with_autoattack():
    targets = {"speedup": 10, "fp32_speedup": 1.5, "acc_gap": 1}
    fast, eager, gap = attack_checks(_attack_rows(), targets)
    assert (fast.met, fast.got) == (True, "12.00x")
    assert (eager.met, eager.got, eager.verdict) == (False, "1.40x", "missed by 7%")
    assert (gap.met, gap.got, gap.verdict) == (False, "1.5 points apart", "over by 0.5 points")
    assert attack_checks(_attack_rows(fast_acc=0.295), targets)[2].met is True
    missing = attack_checks(_attack_rows(with_peer=False), targets)
    assert [c.met for c in missing] == [None, None, None]
    assert "pip install pyautoattack" in missing[0].verdict


def _args(*argv):
    return parser().parse_args(list(argv))


def _preset(name, mode="train"):
    """The targets configs/bench/NAME.yaml sets for ``mode``."""
    return config_targets(load_bench_config(name), mode)


def test_the_presets_targets_apply_unless_flags_override_them():
    assert resolve_targets(_args("--preset", "resnet50"), _preset("resnet50")) == {
        "speedup": 3.5,
        "limit": 0.90,
    }
    assert resolve_targets(_args("--mode", "attack"), _preset("vit_b16", "attack")) == {
        "speedup": 10.0,
        "fp32_speedup": 1.5,
        "acc_gap": 1.0,
    }
    assert resolve_targets(_args("--target-speedup", "3"), _preset("resnet50")) == {
        "speedup": 3.0,
        "limit": 0.90,
    }
    assert resolve_targets(_args("--no-targets"), _preset("paper")) == {}
    assert resolve_targets(_args(), _preset("tiny")) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--mode", "attack", "--target-minutes", "5"],
            "--target-minutes is a target of the other",
        ),
        (["--target-acc-gap", "1"], "--target-acc-gap is a target of the other mode"),
        (["--target-limit", "85"], "--target-limit is a fraction of the limit (e.g. 0.85), got 85"),
        (["--target-speedup", "0"], "--target-speedup must be positive, got 0"),
    ],
)
def test_bad_target_flags_are_errors(argv, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_targets(_args(*argv), _preset("tiny"))


def test_the_result_records_its_checks(tmp_path):
    argv = ["--preset", "tiny", "--no-compile", "--iters", "1", "--repeats", "1", "--warmup", "1"]
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    assert (
        main(
            [
                *argv,
                "--rungs",
                "0,4",
                "--target-speedup",
                "1000",
                "--json",
                str(out),
                "--markdown",
                str(md),
            ]
        )
        == 0
    )
    (check,) = json.loads(out.read_text())["targets"]
    assert check["what"] == "rung 4 over the baseline" and check["met"] is False
    assert check["verdict"].startswith("missed by ")
    assert f"- target: rung 4 over the baseline >= 1000x: {check['got']}" in md.read_text()
