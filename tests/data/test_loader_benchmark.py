"""The loader benchmark runs in its small mode and reports both loaders."""

import json
import subprocess
import sys
from pathlib import Path

from fastrft.data.ffcv_loader import ffcv_available

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loaders.py"


def test_smoke_run_reports_each_loader_size_and_worker_count(tmp_path):
    subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    report = json.loads((tmp_path / "loaders-cpu-smoke.json").read_text())
    rows = {
        (r["loader"], r["size"], r["mode"], r["workers"]): r["images_per_s"] for r in report["rows"]
    }
    assert {("in-memory", 16, "raw", 0), ("in-memory", 32, "raw", 0)} <= set(rows)
    if ffcv_available():
        assert {("ffcv", 32, m, w) for m in ("raw", "jpg") for w in (1, 2)} <= set(rows)
    assert all(rate > 0 for rate in rows.values())
    assert "| loader | size |" in (tmp_path / "loaders-cpu-smoke.md").read_text()
