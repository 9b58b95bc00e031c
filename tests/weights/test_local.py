"""Importing a local checkpoint in a foreign layout: written to the cache under its name,
loaded back through the model builder, never over another file of that name without force.
A model without ImageNet's classes skips the photo check, so this runs without `fastrft[lite]`."""

import io
import os

import pytest
import timm
import torch
from rich.console import Console

from fastrft.models import build_model
from fastrft.weights import importer
from fastrft.weights.importer import import_local

CLASSES = 10


@pytest.fixture
def foreign_file(tmp_path, monkeypatch):
    """A small timm model's weights under other names, with a 10-class head; the test makes
    10 classes the model's default (its config says ImageNet's 1000), so no photo check."""
    monkeypatch.setattr(importer, "get_pretrained_cfg_value", lambda model, key: CLASSES)
    state = timm.create_model("test_efficientnet", num_classes=CLASSES).state_dict()
    path = tmp_path / "mine.pth"
    torch.save({f"_net.{k}": v for k, v in state.items()}, path)
    return path, state


def test_a_local_file_imports_without_a_photo_check_and_loads_back(foreign_file, tmp_path):
    source, state = foreign_file
    log = io.StringIO()
    result = import_local(
        source, "efficientnet_pytorch", "test_efficientnet", "mine", tmp_path, Console(file=log)
    )
    assert result.path == tmp_path / "weights" / "mine.safetensors" and result.answers is None
    assert "no photo check: test_efficientnet has 10 classes" in log.getvalue()
    assert os.listdir(result.path.parent) == ["mine.safetensors"]
    model = build_model("test_efficientnet", CLASSES, weights=result.path)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    fine_tuned = build_model("test_efficientnet", 3, weights=result.path)  # a fresh head
    assert fine_tuned.get_classifier().out_features == 3


def test_another_file_of_that_name_is_replaced_only_with_force(foreign_file, tmp_path):
    source, _ = foreign_file
    args = (source, "efficientnet_pytorch", "test_efficientnet", "mine", tmp_path)
    dest = tmp_path / "weights" / "mine.safetensors"
    dest.parent.mkdir()
    dest.write_bytes(b"an earlier import")
    with pytest.raises(ValueError, match=r"mine\.safetensors exists: pass --force"):
        import_local(*args, Console(file=io.StringIO()))
    assert dest.read_bytes() == b"an earlier import"
    import_local(*args, Console(file=io.StringIO()), force=True)
    assert dest.read_bytes() != b"an earlier import"


def test_a_file_of_another_architecture_names_the_first_misfit(foreign_file, tmp_path):
    source, _ = foreign_file
    quiet = Console(file=io.StringIO())
    with pytest.raises(ValueError) as err:
        import_local(source, "efficientnet_pytorch", "test_resnet", "x", tmp_path, quiet)
    assert str(err.value) == (
        f"{source} does not map onto test_resnet as efficientnet_pytorch: the file's tensor 0, "
        "_net.conv_stem.weight (24, 3, 3, 3), does not fit the model's tensor 0, conv1.0.weight "
        "(16, 3, 3, 3)"
    )
    assert not (tmp_path / "weights").exists()
