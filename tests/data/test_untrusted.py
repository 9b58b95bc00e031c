"""CIFAR batches are read without running code: a restricted unpickler admits only what the
real files hold (dicts, lists, str, bytes, ints, numpy arrays, dtypes and scalars)."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from fastrft.cli import main
from fastrft.data.readers import load_source

_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, n).tolist(),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str opcodes, as the real (Python 2 era) CIFAR files hold."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2 and numpy 1.x wrote it: str opcodes, numpy.core names."""
    import io

    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"numpy._core.", b"numpy.core.")


def _write_cifar(root: Path, dump) -> dict:
    root.mkdir(exist_ok=True)
    batches = {name: _batch(seed) for seed, name in enumerate(_NAMES)}
    for name, batch in batches.items():
        (root / name).write_bytes(dump(batch))
    return batches


@pytest.mark.parametrize(
    "dump",
    [pytest.param(_py2_pickle, id="python2")]
    + [pytest.param(lambda o, p=p: pickle.dumps(o, protocol=p), id=f"p{p}") for p in range(6)],
)
def test_real_cifar_batches_load(tmp_path, dump):
    batches = _write_cifar(tmp_path, dump)
    batches["test_batch"][b"labels"] = [np.int64(y) for y in batches["test_batch"][b"labels"]]
    (tmp_path / "test_batch").write_bytes(dump(batches["test_batch"]))  # numpy scalar labels
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(dump(meta))
    train, val, classes = load_source(tmp_path, "cifar")
    want = batches["test_batch"][b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(val.images, want)
    assert val.labels.tolist() == [int(y) for y in batches["test_batch"][b"labels"]]
    assert len(train) == 20 and classes == [f"c{i}" for i in range(10)]


class _CreatesFile:
    """A pickle that, loaded, creates the file at ``path``."""

    def __init__(self, path: Path, how: str) -> None:
        self.path, self.how = str(path), how

    def __reduce__(self):
        if self.how == "exec":
            return exec, (f"open({self.path!r}, 'w').close()",)
        if self.how == "system":
            return os.system, (f"touch {self.path}",)
        return os.mkdir, (self.path,)


@pytest.mark.parametrize(
    ("how", "refused"), [("exec", "builtins.exec"), ("system", "system"), ("mkdir", "mkdir")]
)
@pytest.mark.parametrize("where", ["whole", "nested"])
def test_hostile_batch_runs_nothing_and_is_named(tmp_path, how, refused, where):
    _write_cifar(tmp_path / "src", pickle.dumps)
    victim = tmp_path / "created"
    evil = _CreatesFile(victim, how)
    payload = evil if where == "whole" else {**_batch(), b"labels": [evil]}
    (tmp_path / "src" / "data_batch_3").write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=rf"data_batch_3.*{refused}") as err:
        load_source(tmp_path / "src", "cifar")
    assert not victim.exists()
    assert "\n" not in str(err.value)


def test_train_on_a_hostile_batch_exits_2_with_one_line(tmp_path, capsys):
    _write_cifar(tmp_path / "src", pickle.dumps)
    victim = tmp_path / "created"
    (tmp_path / "src" / "test_batch").write_bytes(pickle.dumps(_CreatesFile(victim, "exec")))
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--no-progress",
                "data.source=cifar",
                f"data.root={tmp_path / 'src'}",
                f"out_dir={tmp_path / 'run'}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "test_batch" in err and "builtins.exec" in err and len(err.splitlines()) == 1
    assert not victim.exists()


class _ForgedDtype:
    """A dtype with an object field whose pickled flags say it holds no objects."""

    def __reduce__(self):
        state = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)
        return np.dtype, ("V8", False, True), state


class _Forged:
    """numpy reductions that would read file bytes as object pointers (a crash, or worse)."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self):
        pointers = b"A" * 8
        if self.how == "ndarray":
            return np.ndarray, ((1,), np.dtype(object), pointers)
        if self.how == "frombuffer":
            return np.zeros(1).__reduce_ex__(5)[0], (pointers, _ForgedDtype(), (1,), "C")
        reconstruct = np.zeros(1).__reduce__()[0]
        return reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), _ForgedDtype(), False, pointers)


@pytest.mark.parametrize("how", ["ndarray", "frombuffer", "setstate"])
def test_numpy_reductions_cannot_forge_pointers(tmp_path, how):
    """In a subprocess: on failure, the forged pointers may crash the interpreter."""
    _write_cifar(tmp_path, pickle.dumps)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({**_batch(), b"data": _Forged(how)}))
    script = (
        "import sys; from fastrft.data.readers import load_source\n"
        "try: load_source(__import__('pathlib').Path(sys.argv[1]), 'cifar')\n"
        "except ValueError as err: print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"test_batch: .*refused", done.stdout), done.stdout
