"""Tiny sweeps for the tests: configs/toy.yaml cut down to runs of a few seconds on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY = {
    "epochs": 2,
    "data.toy_samples": 256,
    "data.img_size": 8,
    "data.batch_size": 32,
    "data.eval_batch_size": 128,
    "attack.steps": 2,
    "eval.steps": 2,
    "eval.adv_samples": 64,
    "device": "cpu",
    "speed.compile": False,
}


def write_sweep(folder: Path, grid: Any, name: str = "tiny", **extra: Any) -> Path:
    """SWEEP.yaml over configs/toy.yaml with TINY overrides; runs go to folder/runs."""
    spec = {
        "name": name,
        "configs": [str(CONFIGS / "toy.yaml")],
        "overrides": {**TINY, **extra.pop("overrides", {})},
        "grid": grid,
        "root": str(folder / "runs"),
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def ledger(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]


def states(root: Path, run: str) -> list[str]:
    return [r["state"] for r in ledger(root) if r["run"] == run]
