"""build_model: timm and fastrft models with a fresh head and their own normalisation; local
weight files in every accepted layout, and a clear error for every way a file can be wrong."""

import re

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from timm.optim import create_optimizer_v2

from fastrft import models
from fastrft.models import (
    PARAM_GROUPS,
    Normalized,
    build_model,
    register_model,
    split_parameters,
)
from fastrft.toy import TinyCNN, toy_images, train_toy
from tests.helpers import assert_close

TIMM_TEST_MODELS = ["test_vit", "test_resnet", "test_convnext"]
SIZE = 64  # test_vit gets img_size=SIZE; the convolutional models take any size


def _build(name, num_classes, **kw):
    return build_model(name, num_classes, img_size=SIZE, **kw).eval()


def _head_keys(model):
    """Backbone state-dict keys of the classifier."""
    prefix = next(f"{n}." for n, m in model.backbone.named_modules() if m is model.get_classifier())
    return {k for k in model.backbone.state_dict() if k.startswith(prefix)}


def _assert_state_equal(actual, expected, keys, what):
    for k in sorted(keys):
        assert_close(actual[k], expected[k], what=f"{what} {k}")


@pytest.mark.parametrize("name", [*TIMM_TEST_MODELS, "tiny_cnn"])
def test_fresh_head_for_num_classes(name):
    model = _build(name, 7)
    assert isinstance(model, Normalized)
    assert model.get_classifier().out_features == 7
    assert model(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 7)


@pytest.mark.parametrize("name", TIMM_TEST_MODELS)
@pytest.mark.parametrize(
    "mean, std", [(None, None), ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))], ids=["own", "explicit"]
)
def test_forward_normalises_pixels(name, mean, std):
    model = _build(name, 3, mean=mean, std=std)
    want_mean, want_std = (0.5,) * 3 if mean is None else mean, (0.5,) * 3 if std is None else std
    assert model.mean.flatten().tolist() == pytest.approx(want_mean)
    assert model.std.flatten().tolist() == pytest.approx(want_std)
    x = torch.rand(2, 3, SIZE, SIZE)
    m, s = torch.tensor(want_mean).view(1, 3, 1, 1), torch.tensor(want_std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert_close(model(x), model.backbone((x - m) / s), atol=1e-6, what="logits")


def test_channels_last_reaches_the_backbone():
    model = _build("test_resnet", 3)
    seen = []
    model.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(x.contiguous(memory_format=torch.channels_last))
        ref = model(x)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert_close(out, ref, atol=1e-5, what="channels_last logits")


@pytest.mark.parametrize(
    "name, mean, std",
    [
        ("vit_base_patch16_clip_224.laion2b", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        ("resnet50.a1_in1k", IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        ("tiny_cnn", (0.0,), (1.0,)),
    ],
)
def test_mean_std_follow_the_model(name, mean, std):
    model = build_model(name, 2)
    assert model.mean.flatten().tolist() == pytest.approx(mean)
    assert model.std.flatten().tolist() == pytest.approx(std)


def test_img_size_reaches_vits_only():
    vit = _build("test_vit", 3)
    patch = vit.backbone.patch_embed.patch_size[0]
    assert vit.backbone.pos_embed.shape[1] == (SIZE // patch) ** 2 + 1  # + class token
    assert _build("test_resnet", 3)(torch.rand(1, 3, 40, 40)).shape == (1, 3)


def _save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)


# layouts of weight files besides a saved Normalized model (test_weights_round_trip_with_new_head)
LAYOUTS = {
    "backbone": lambda m: m.backbone.state_dict(),
    "state_dict": lambda m: {"state_dict": m.backbone.state_dict(), "epoch": 3},
    "model": lambda m: {"model": m.backbone.state_dict()},
    "ddp": lambda m: {f"module.{k}": v for k, v in m.backbone.state_dict().items()},
}


@pytest.mark.parametrize("name", TIMM_TEST_MODELS)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_round_trip_with_new_head(tmp_path, name, suffix):
    source = _build(name, 5)
    path = tmp_path / f"weights{suffix}"
    _save(source.state_dict(), path)
    torch.manual_seed(1)
    fresh = _build(name, 7)
    torch.manual_seed(1)
    loaded = _build(name, 7, weights=path)
    src, got, new = source.backbone.state_dict(), loaded.backbone.state_dict(), fresh.state_dict()
    head = _head_keys(loaded)
    _assert_state_equal(got, src, got.keys() - head, "backbone")
    _assert_state_equal(loaded.state_dict(), new, {f"backbone.{k}" for k in head}, "fresh head")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weights_layouts(tmp_path, layout):
    source = _build("test_convnext", 5)
    path = tmp_path / "weights.pt"
    torch.save(LAYOUTS[layout](source), path)
    loaded = _build("test_convnext", 5, weights=path)
    # same number of classes: the file's head fits and loads too
    _assert_state_equal(
        loaded.state_dict(), source.state_dict(), source.state_dict().keys(), layout
    )


def test_vit_weights_at_another_img_size(tmp_path):
    """timm's converter resamples the position embeddings, as for its hub weights."""
    source = build_model("test_vit", 5)  # its default 160 x 160
    path = tmp_path / "vit.safetensors"
    _save(source.backbone.state_dict(), path)
    loaded = _build("test_vit", 3, weights=path)
    assert loaded.backbone.pos_embed.shape != source.backbone.pos_embed.shape
    weight = "patch_embed.proj.weight"
    assert_close(loaded.backbone.state_dict()[weight], source.backbone.state_dict()[weight])


def test_tiny_cnn_trained_on_raw_pixels_loads_unchanged(tmp_path):
    x, y = toy_images(256, size=16)
    raw = train_toy(TinyCNN(), x, y, epochs=1)
    path = tmp_path / "tiny.pt"
    torch.save(raw.state_dict(), path)
    model = build_model("tiny_cnn", 10, weights=path).eval()
    with torch.no_grad():
        assert_close(model(x[:8]), raw(x[:8]), atol=1e-6, what="logits")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.safetensors"):
        build_model("test_resnet", 3, weights=path)


@pytest.mark.parametrize(
    "filename, content",
    [("junk.pt", b"not a checkpoint"), ("junk.safetensors", b"\x10\x00garbage"), ("e.pt", b"")],
)
def test_corrupt_file(tmp_path, filename, content):
    path = tmp_path / filename
    path.write_bytes(content)
    refusal = rf"{re.escape(filename)} is not a fastrft checkpoint or safetensors file"
    with pytest.raises(ValueError, match=refusal):
        build_model("test_resnet", 3, weights=path)


def test_file_without_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match=r"list\.pt holds no state dict"):
        build_model("test_resnet", 3, weights=path)


@pytest.mark.parametrize(
    "source, target, why",
    [
        ("test_vit", "test_resnet", "missing keys.*unexpected keys"),
        ("test_resnet", "test_vit", "missing keys.*unexpected keys"),
        ("test_vit", "test_convnext", "timm's converter failed"),
        ("tiny_cnn", "test_resnet", "missing keys"),
    ],
)
def test_weights_of_another_architecture(tmp_path, source, target, why):
    path = tmp_path / f"{source}.pt"
    torch.save(_build(source, 3).state_dict(), path)
    with pytest.raises(ValueError, match=rf"{source}\.pt does not fit .*{why}"):
        _build(target, 3, weights=path)


def test_weights_of_a_wider_model(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(build_model("tiny_cnn", 3, width=8).state_dict(), path)
    with pytest.raises(ValueError, match=r"wide.pt does not fit .*shape mismatches"):
        build_model("tiny_cnn", 3, weights=path)


def test_weights_saved_with_another_normalisation(tmp_path):
    path = tmp_path / "clip_norm.pt"
    torch.save(_build("test_resnet", 3, mean=OPENAI_CLIP_MEAN).state_dict(), path)
    with pytest.raises(ValueError, match=r"clip_norm\.pt was saved with mean"):
        _build("test_resnet", 3, weights=path)
    _build("test_resnet", 3, mean=OPENAI_CLIP_MEAN, weights=path)


def test_pretrained_offline_says_how_to_pass_a_file(monkeypatch, tmp_path):
    # offline mode fails at once where retries would take a minute; an empty cache
    # makes sure nothing is found on a machine that has downloaded weights before
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"'test_resnet'.*weights=PATH"):
        build_model("test_resnet", 3, pretrained=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="resnt50"), "unknown model 'resnt50'.*close matches: resnet50"),
        (dict(name="resnet50.bogus"), "no tag 'bogus' for resnet50"),
        (dict(name="tiny_cnn", pretrained=True), "tiny_cnn.*weights=PATH"),
        (dict(name="test_resnet", pretrained=True, weights="w.pt"), "not both"),
        (dict(name="test_resnet", num_classes=0), "num_classes"),
        (dict(name="test_resnet", mean=(0.5, 0.5), std=(1.0,)), "same length"),
        (dict(name="test_resnet", std=(1.0, 0.0, 1.0)), "positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(kwargs.pop("name"), kwargs.pop("num_classes"), **kwargs)


def test_register_model(monkeypatch):
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))

    @register_model("mlp", mean=(0.5,), std=(0.25,), head="2")
    def mlp(num_classes, img_size, hidden=8):
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(3 * img_size**2, hidden),
            torch.nn.Linear(hidden, num_classes),
        )

    model = build_model("mlp", 4, img_size=5, hidden=6)
    assert model(torch.rand(2, 3, 5, 5)).shape == (2, 4)
    assert model.get_classifier() is model.backbone[2]
    assert model.std.flatten().tolist() == [0.25]
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp", mean=(0.0,), std=(1.0,), head="2")(mlp)


@pytest.mark.parametrize("name", [*TIMM_TEST_MODELS, "tiny_cnn"])
def test_split_parameters_partitions_trainable_parameters(name):
    model = _build(name, 4)
    frozen = next(model.backbone.parameters())
    frozen.requires_grad_(False)
    groups = split_parameters(model)
    assert tuple(groups) == PARAM_GROUPS
    ids = [id(p) for ps in groups.values() for p in ps]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == trainable
    head = {id(p) for p in model.get_classifier().parameters()}
    assert {id(p) for p in groups["head_decay"] + groups["head_no_decay"]} == head
    assert all(p.ndim > 1 for g in ("backbone_decay", "head_decay") for p in groups[g])
    assert groups["backbone_decay"] and groups["backbone_no_decay"]


SMALL_SWIN = dict(embed_dim=24, depths=(1, 1), num_heads=(1, 2), window_size=4)


@pytest.mark.parametrize(
    "name, kwargs, listed",
    [
        ("vit_tiny_patch16_224", {}, ["pos_embed", "cls_token"]),
        (
            "swin_tiny_patch4_window7_224",
            SMALL_SWIN,
            [f"layers.{i}.blocks.0.attn.relative_position_bias_table" for i in (0, 1)],
        ),
    ],
)
def test_split_parameters_spares_what_timm_lists_in_no_weight_decay(name, kwargs, listed):
    """Position embeddings, class tokens and relative position tables are no weights to shrink:
    the backbone lists them in no_weight_decay(), by names the wrapper prefixes."""
    model = build_model(name, 4, img_size=32, **kwargs)
    params = dict(model.named_parameters())
    exempt = {f"backbone.{n}" for n in listed}
    assert all(params[n].ndim > 1 for n in exempt), "listed, not spared for being 1-d"
    names = {id(p): n for n, p in params.items()}
    groups = split_parameters(model)
    no_decay = {names[id(p)] for g in ("backbone_no_decay", "head_no_decay") for p in groups[g]}
    assert no_decay == exempt | {n for n, p in params.items() if p.ndim <= 1}
    # the same split as timm's own optimizer factory on the bare backbone
    timm_groups = create_optimizer_v2(model.backbone, "adamw", weight_decay=0.05).param_groups
    timm_no_decay = {id(p) for g in timm_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {names[i] for i in timm_no_decay} == no_decay


class _Listing(torch.nn.Module):
    """A backbone whose no_weight_decay() holds a pattern ("pos.*") and a module ("table")."""

    def __init__(self):
        super().__init__()
        self.pos, self.table, self.body = (torch.nn.Linear(3, 3) for _ in range(3))
        self.head = torch.nn.Linear(3, 2)

    def no_weight_decay(self):
        return {"pos.*", "table"}

    def forward(self, x):
        return self.head(self.body(self.table(self.pos(x))))


def test_no_weight_decay_names_may_be_patterns_or_modules():
    model = Normalized(_Listing(), (0.0,), (1.0,), head_name="head")
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {k: {names[id(p)] for p in ps} for k, ps in split_parameters(model).items()}
    assert groups["backbone_decay"] == {"backbone.body.weight"}
    assert groups["backbone_no_decay"] == {
        f"backbone.{m}.{p}" for m in ("pos", "table", "body") for p in ("weight", "bias")
    } - {"backbone.body.weight"}
    assert groups["head_decay"] == {"backbone.head.weight"}


def test_split_parameters_needs_a_classifier():
    with pytest.raises(ValueError, match="get_classifier"):
        split_parameters(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="head_name"):
        split_parameters(Normalized(torch.nn.Linear(2, 2), (0.0,), (1.0,)))
