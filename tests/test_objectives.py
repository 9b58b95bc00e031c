import pytest
import torch
import torch.nn.functional as F

from fastrft.objectives import OBJECTIVES, kl_to_clean, make_objective
from fastrft.toy import TinyCNN


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return TinyCNN(classes=4, width=4).train(), torch.rand(6, 3, 8, 8), torch.randint(0, 4, (6,))


def test_registry_and_errors():
    assert set(OBJECTIVES) == {"standard", "madry", "trades"}
    assert make_objective("trades", beta=2.0).beta == 2.0
    with pytest.raises(ValueError, match="objective must be one of"):
        make_objective("mart")


def test_standard_and_madry_losses(batch):
    model, x, y = batch
    x_adv = (x + 0.03).clamp(0, 1)
    loss, _ = make_objective("standard").loss(model, x, y, None)
    assert torch.allclose(loss, F.cross_entropy(model(x), y))
    loss, logits = make_objective("madry").loss(model, x, y, x_adv)
    assert torch.allclose(loss, F.cross_entropy(model(x_adv), y))
    assert torch.allclose(logits, model(x_adv))
    assert not make_objective("standard").attacks and make_objective("madry").attacks


def test_trades_loss_and_attack_target(batch):
    model, x, y = batch
    obj = make_objective("trades", beta=3.0)
    target = obj.attack_target(model, x, y)
    assert model.training, "attack_target must restore train mode"
    assert torch.allclose(target.sum(1), torch.ones(6))
    x_adv = (x + 0.05).clamp(0, 1)
    loss, _ = obj.loss(model, x, y, x_adv)
    p = F.softmax(model(x), 1)
    kl = (p * (p.log() - F.log_softmax(model(x_adv), 1))).sum(1).mean()
    assert torch.allclose(loss, F.cross_entropy(model(x), y) + 3.0 * kl, atol=1e-6)
    clean_only, _ = obj.loss(model, x, y, None)
    assert torch.allclose(clean_only, F.cross_entropy(model(x), y))


def test_kl_to_clean_is_zero_at_the_clean_point_and_positive_elsewhere():
    logits = torch.randn(5, 7)
    p = F.softmax(logits, 1)
    assert kl_to_clean(logits, p).abs().max() < 1e-6
    assert (kl_to_clean(logits + torch.randn(5, 7), p) > 0).all()
