"""fastrft.atomic: a file is written whole or not at all; the old one stays until then."""

import json

import pytest

from fastrft.atomic import atomic_path, temporary, write_bytes, write_json, write_text


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    write_text(path, "old")
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_an_exception_mid_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("the old, complete file")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as tmp:
        assert tmp == temporary(path) and tmp.parent == path.parent
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "the old, complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_an_exception_before_the_first_write_creates_nothing(tmp_path):
    path = tmp_path / "new.json"
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    assert not list(tmp_path.iterdir())


def test_a_glob_of_every_processs_temporary_files():
    from pathlib import Path

    assert temporary(Path("run/last.pt"), "*").name == ".last.pt.tmp-*"
    assert temporary(Path("run/last.pt"), 42) == Path("run/.last.pt.tmp-42")


def test_a_temporary_that_keeps_the_suffix_for_readers_that_go_by_it(tmp_path):
    path = tmp_path / "w.safetensors"
    with atomic_path(path, keep_suffix=True) as tmp:
        assert tmp.name == f"{temporary(path).name}.safetensors" and tmp.suffix == ".safetensors"
        tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    assert tmp.match(temporary(path, "*").name + "*")  # a cleanup's glob still finds it
