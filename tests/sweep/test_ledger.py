"""The ledger: whole records appended, torn lines skipped and ended, states and attempts."""

import json

import pytest

from fastrft.sweep.ledger import Ledger


def test_records_states_and_attempts(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert list(ledger.records()) == [] and ledger.last() == {}
    ledger.append("a", "queued", attempt=0)
    ledger.append("a", "running", attempt=1, pid=12)
    ledger.append("b", "running", attempt=1)
    ledger.append("a", "failed", attempt=1, exit_code=1)
    ledger.append("a", "running", attempt=2)
    ledger.append("a", "done", attempt=2, results={"clean_acc": 0.5})
    assert {k: v["state"] for k, v in ledger.last().items()} == {"a": "done", "b": "running"}
    assert ledger.attempts() == {"a": 2, "b": 1}
    lines = ledger.path.read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[1])["pid"] == 12


def test_a_torn_last_line_is_skipped_then_ended(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("a", "running", attempt=1)
    with open(ledger.path, "a") as f:
        f.write('{"run": "a", "state": "do')  # a write cut short
    assert [r["state"] for r in ledger.records()] == ["running"]
    ledger.append("a", "done", attempt=1)
    assert [r["state"] for r in ledger.records()] == ["running", "done"]


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ledger state must be one of"):
        Ledger(tmp_path / "ledger.jsonl").append("a", "finished")
