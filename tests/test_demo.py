"""The README's first command runs: a reduced demo prints its table."""

import subprocess
import sys


def test_demo_runs_and_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "fastrft.demo", "--samples", "64", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "clean accuracy on 64 held-out images" in out
    for row in ("FGSM-RS", "PGD-2", "APGD-CE-2", "APGD-DLR-2"):
        assert row in out, f"row {row} missing from:\n{out}"


def test_demo_rejects_bad_arguments():
    run = subprocess.run(
        [sys.executable, "-m", "fastrft.demo", "--steps", "0"], capture_output=True, text=True
    )
    assert run.returncode != 0 and "--steps must be at least 1" in run.stderr
