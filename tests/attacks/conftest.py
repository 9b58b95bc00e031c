import pytest
import torch

from fastrft.toy import TinyCNN, toy_images, train_toy


@pytest.fixture(scope="session")
def trained():
    """A small standard-trained (non-robust) CNN and 512 held-out images: ~97% clean."""
    torch.manual_seed(0)
    x, y = toy_images(2560, seed=0)
    model = train_toy(TinyCNN(), x[:2048], y[:2048], epochs=8)
    return model, x[2048:], y[2048:]


@pytest.fixture
def tiny_model():
    """An untrained TinyCNN in a mixed state: train mode with one BatchNorm in eval mode,
    the first conv frozen, and a .grad already on the head, to see that attacks restore it."""
    model = TinyCNN(classes=5, width=4)
    model.train()
    model.features[1].eval()
    model.features[0].weight.requires_grad_(False)
    model.head.weight.grad = torch.randn_like(model.head.weight)
    return model
