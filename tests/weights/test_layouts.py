"""Foreign layouts: a state dict in another library's names maps onto timm's pair by pair, and
a reordered, renamed, missing, extra or mis-shaped tensor is refused at the first misfit."""

import pytest
import torch

from fastrft.weights.layouts import LAYOUTS, by_order

# efficientnet_pytorch's names and timm's for the same small network, in the same order
THEIRS = {
    "_conv_stem.weight": (4, 3, 3, 3),
    "_bn0.weight": (4,),
    "_bn0.bias": (4,),
    "_bn0.running_mean": (4,),
    "_bn0.running_var": (4,),
    "_bn0.num_batches_tracked": (),
    "_fc.weight": (2, 4),
    "_fc.bias": (2,),
}
OURS = dict(
    zip(
        [
            "conv_stem.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "classifier.weight",
            "classifier.bias",
        ],
        THEIRS.values(),
        strict=True,
    )
)


def tensors(shapes: dict) -> dict:
    return {k: torch.randn(s) if s else torch.tensor(7) for k, s in shapes.items()}


def test_a_state_dict_in_the_same_order_maps_onto_the_models_names():
    theirs, ours = tensors(THEIRS), tensors(OURS)
    mapped = LAYOUTS["efficientnet_pytorch"].map(theirs, ours)
    assert list(mapped) == list(OURS)
    assert all(m is t for m, t in zip(mapped.values(), theirs.values(), strict=True))


def rename(shapes: dict, old: str, new: str) -> dict:
    return {new if k == old else k: s for k, s in shapes.items()}


def swap(shapes: dict, a: str, b: str) -> dict:
    keys = list(shapes)
    i, j = keys.index(a), keys.index(b)
    keys[i], keys[j] = keys[j], keys[i]
    return {k: shapes[k] for k in keys}


@pytest.mark.parametrize(
    ("theirs", "message"),
    [
        (  # same shapes, another order: only the names' last parts tell
            swap(THEIRS, "_bn0.weight", "_bn0.bias"),
            "the file's tensor 1, _bn0.bias (4,), does not fit the model's tensor 1, "
            "bn1.weight (4,)",
        ),
        (
            rename(THEIRS, "_bn0.running_var", "_bn0.running_std"),
            "tensor 4, _bn0.running_std (4,), does not fit the model's tensor 4, "
            "bn1.running_var (4,)",
        ),
        (
            {**THEIRS, "_fc.weight": (3, 4)},
            "tensor 6, _fc.weight (3, 4), does not fit the model's tensor 6, "
            "classifier.weight (2, 4)",
        ),
        (  # a tensor missing in the middle shifts the rest: the first misfit is named
            {k: s for k, s in THEIRS.items() if k != "_bn0.running_mean"},
            "tensor 3, _bn0.running_var (4,), does not fit the model's tensor 3, "
            "bn1.running_mean (4,)",
        ),
        (
            {k: s for k, s in THEIRS.items() if k != "_fc.bias"},
            "the model's tensor 7, classifier.bias (2,), has no counterpart: the file has 7 "
            "tensors, the model 8",
        ),
        (
            {**THEIRS, "_fc.extra": (1,)},
            "the file's tensor 8, _fc.extra (1,), has no counterpart: the file has 9 tensors, "
            "the model 8",
        ),
    ],
    ids=["reordered", "renamed", "mis-shaped", "missing", "missing-last", "extra"],
)
def test_the_first_tensor_that_does_not_fit_is_named(theirs, message):
    with pytest.raises(ValueError) as err:
        by_order(tensors(theirs), tensors(OURS))
    assert message in str(err.value)
