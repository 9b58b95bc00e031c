"""benchmarks/results_table.py: the README's table from real `fastrft bench --json` files."""

import json
import subprocess
import sys
from pathlib import Path

from fastrft.bench.cli import main

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "results_table.py"
TINY = ["--preset", "tiny", "--no-compile", "--iters", "1", "--repeats", "1", "--warmup", "1"]


def _table(*paths):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True
    )


def test_the_table_shows_each_results_top_rung_and_targets(tmp_path):
    ladder, attack = tmp_path / "ladder.json", tmp_path / "attack.json"
    main([*TINY, "--rungs", "0,4", "--target-speedup", "1000", "--json", str(ladder)])
    main([*TINY, "--mode", "attack", "attack.name=apgd", "attack.steps=2", "--json", str(attack)])
    (tmp_path / "other.json").write_text('{"op": "linf_step"}')
    run = _table(ladder, attack, tmp_path / "other.json")
    assert run.returncode == 0, run.stderr
    r = json.loads(ladder.read_text())
    top = r["rows"][-1]
    row = next(line for line in run.stdout.splitlines() if line.startswith("| tiny_cnn 16px"))
    assert f"| 4: {top['name']} | {top['images_per_s']:,.0f} | {top['speedup']:.2f}x |" in row
    assert "rung 4 over the baseline >= 1000x: missed by " in row
    assert "| workload | device, date | AutoAttack APGD-CE img/s |" in run.stdout
    assert "other.json: not a `fastrft bench --json` result" in run.stderr


def test_no_usable_result_is_exit_1(tmp_path):
    (tmp_path / "x.json").write_text("not json")
    run = _table(tmp_path / "x.json")
    assert run.returncode == 1 and "no usable results" in run.stderr
