"""Bad input gets a ValueError that names the argument."""

import numpy as np
import pytest
import torch

from fastrft.attacks import apgd, fgsm, pgd


@pytest.fixture
def model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))


X, Y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])

CASES = [
    ({"eps": -0.1}, "eps must be a finite non-negative"),
    ({"eps": torch.tensor([0.1, -0.1])}, "eps must be non-negative"),
    ({"eps": torch.ones(3)}, "one value per sample"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"norm": "l1"}, "norm must be 'linf' or 'l2'"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"x": X * 2}, r"x must hold pixels in \[0, 1\]"),
    ({"x": X - 0.5}, r"x must hold pixels in \[0, 1\]"),
    ({"x": (X * 255).to(torch.uint8)}, "x must be a float tensor"),
    ({"y": torch.tensor([0, 1, 2])}, "different batch sizes"),
    ({"y": torch.tensor([0.0, 1.0])}, "y must be a 1-d integer tensor"),
    ({"model_mode": "test"}, "model_mode must be"),
    ({"loss": "dlr", "targeted": True}, "targeted attacks support loss='ce' only"),
]


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
@pytest.mark.parametrize(("change", "match"), CASES)
def test_bad_argument_is_named(model, attack, change, match):
    args = {"x": X, "y": Y, "eps": 4 / 255, "steps": 2, "norm": "linf", "loss": "ce"}
    args.update(change)
    fn = {"pgd": pgd, "apgd": apgd}[attack]
    with pytest.raises(ValueError, match=match):
        fn(model, **args)


def test_fgsm_checks_too(model):
    with pytest.raises(ValueError, match="eps must be a finite non-negative"):
        fgsm(model, X, Y, -1.0)


def test_apgd_specific_arguments(model):
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        apgd(model, X, Y, 0.1, restarts=0)
    with pytest.raises(ValueError, match="rho must be in"):
        apgd(model, X, Y, 0.1, rho=1.5)


def test_custom_loss_takes_any_per_sample_target(model):
    """A loss function of one's own (TRADES' KL to the clean prediction) gets soft targets."""
    probs = torch.softmax(model(X), 1).detach()

    def kl(logits, target):
        return (target * (target.log() - torch.log_softmax(logits, 1))).sum(1)

    x_adv = pgd(model, X, probs, 8 / 255, steps=3, loss=kl)
    assert (x_adv - X).abs().max() <= 8 / 255 + 1e-6
    assert kl(model(x_adv), probs).sum() > kl(model(X), probs).sum()
    with pytest.raises(ValueError, match="y must be a tensor with one row per sample"):
        pgd(model, X, torch.tensor(1.0), 8 / 255, loss=kl)


@pytest.mark.parametrize("norm", ["l2", "L2"])
def test_fgsm_refuses_l2(model, norm):
    with pytest.raises(ValueError, match=r"fgsm is an l_inf attack .* pgd\(.*norm='l2'"):
        fgsm(model, X, Y, 0.5, norm=norm)


def test_fgsm_takes_linf_by_any_spelling(model):
    torch.manual_seed(1)
    a = fgsm(model, X, Y, 4 / 255, norm="Linf")
    torch.manual_seed(1)
    assert torch.equal(a, fgsm(model, X, Y, 4 / 255))


NAN_PIXEL = X.clone().index_put_((torch.tensor(0),), torch.tensor(float("nan")))
INPUT_CASES = [
    ({"x": X[:0], "y": Y[:0]}, "x is an empty batch"),
    ({"x": X[0], "y": torch.tensor([0, 1, 2])}, r"x must be a batch \(N, C, H, W\).*x\[None\]"),
    ({"x": NAN_PIXEL}, "x holds NaN pixels"),
    ({"eps": float("inf")}, "eps must be a finite"),
    ({"eps": True}, r"eps must be a finite non-negative number.*got True \(a bool\)"),
    ({"eps": torch.tensor([0.1, float("nan")])}, "eps must be non-negative and finite"),
]


@pytest.mark.parametrize("attack", ["pgd", "apgd", "fgsm"])
@pytest.mark.parametrize(("change", "match"), INPUT_CASES)
def test_bad_input_is_named(model, attack, change, match):
    args = {"x": X, "y": Y, "eps": 4 / 255, **change}
    fn = {"pgd": pgd, "apgd": apgd, "fgsm": fgsm}[attack]
    with pytest.raises(ValueError, match=match):
        fn(model, **args)


@pytest.mark.parametrize(
    "alpha", [0.0, -0.1, float("nan"), float("inf"), True, torch.tensor([0.1, 0.0])]
)
@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_bad_step_size_is_named(model, attack, alpha):
    fn = {"pgd": pgd, "fgsm": fgsm}[attack]
    with pytest.raises(ValueError, match="alpha must be"):
        fn(model, X, Y, 4 / 255, alpha=alpha)


def test_zero_budget_takes_a_zero_step(model):
    """eps 0 (an eps schedule's first epoch): the derived step is 0 and the input comes back."""
    assert torch.equal(fgsm(model, X, Y, 0.0), X)
    assert torch.equal(pgd(model, X, Y, torch.zeros(2), alpha=torch.zeros(2), steps=2), X)


@pytest.mark.parametrize("attack", ["pgd", "apgd", "fgsm"])
@pytest.mark.parametrize("to_numpy", [np.float32, np.float64, np.int64])
def test_numpy_eps_is_a_number(model, attack, to_numpy):
    fn = {"pgd": pgd, "apgd": apgd, "fgsm": fgsm}[attack]
    eps = 4 / 255 if to_numpy is not np.int64 else 0
    torch.manual_seed(0)
    want = fn(model, X, Y, float(to_numpy(eps)))
    torch.manual_seed(0)
    assert torch.equal(fn(model, X, Y, to_numpy(eps)), want)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_dlr_needs_three_classes(attack):
    two = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    fn = {"pgd": pgd, "apgd": apgd}[attack]
    with pytest.raises(ValueError, match=r"loss='dlr' needs at least 3 classes.*2.*loss='ce'"):
        fn(two, X, Y, 4 / 255, loss="dlr")


class _Returns(torch.nn.Module):
    """A classifier whose forward wraps its logits the way ``wrap`` says."""

    def __init__(self, wrap):
        super().__init__()
        self.net, self.wrap = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)), wrap

    def forward(self, x):
        return self.wrap(self.net(x))


class _HFOutput:
    """What a Hugging Face image classifier returns: an object with .logits (and others)."""

    def __init__(self, logits):
        self.logits, self.hidden_states = logits, None


LOGITS_CARRIERS = {
    "attribute": _HFOutput,
    "dict key": lambda t: {"logits": t, "aux": t.detach()},
}


@pytest.mark.parametrize("attack", ["pgd", "apgd", "fgsm"])
@pytest.mark.parametrize("carrier", sorted(LOGITS_CARRIERS))
def test_logits_are_taken_from_a_model_output_named_logits(attack, carrier):
    """HF-style outputs: the tensor named ``logits`` (attribute or key) is attacked."""
    plain = _Returns(lambda t: t)
    wrapped = _Returns(LOGITS_CARRIERS[carrier])
    wrapped.load_state_dict(plain.state_dict())
    fn = {"pgd": pgd, "apgd": apgd, "fgsm": fgsm}[attack]
    torch.manual_seed(0)
    want = fn(plain, X, Y, 8 / 255)
    torch.manual_seed(0)
    assert torch.equal(fn(wrapped, X, Y, 8 / 255), want)


OTHER_OUTPUTS = [
    pytest.param(lambda t: (t, t), r"a tuple of 2 \(Tensor, Tensor\)", id="tuple"),
    pytest.param(lambda t: [t], r"a list of 1 \(Tensor\)", id="list"),
    pytest.param(lambda t: {"scores": t}, r"a dict with keys \['scores'\]", id="dict"),
    pytest.param(lambda t: t[:, 0], r"a tensor of shape \(2,\)", id="1-d"),
    pytest.param(lambda t: t.tolist(), r"a list of 2 \(list, list\)", id="numbers"),
]


@pytest.mark.parametrize("attack", ["pgd", "apgd", "fgsm", "accuracy_curve"])
@pytest.mark.parametrize(("wrap", "match"), OTHER_OUTPUTS)
def test_a_model_output_without_logits_is_named(attack, wrap, match):
    from fastrft.evaluate import accuracy_curve

    model = _Returns(wrap)
    fix = r"; attacks need logits \(N, classes\).*forward return"
    with pytest.raises(ValueError, match="model returned " + match + fix):
        if attack == "accuracy_curve":
            accuracy_curve(model, [(X, Y)], [0, 4 / 255], steps=2)
        else:
            {"pgd": pgd, "apgd": apgd, "fgsm": fgsm}[attack](model, X, Y, 4 / 255)


def test_numpy_eps_everywhere_the_library_takes_a_budget(model):
    """np.float32(8/255), as numpy arithmetic gives it, counts as the float it holds."""
    from fastrft.attacks import APGD, FFGSM, FGSM, PGD, PGDL2
    from fastrft.evaluate import accuracy_curve, robust_accuracy

    eps = np.float32(8 / 255)
    for cls in (APGD, FFGSM, FGSM, PGD, PGDL2):
        torch.manual_seed(0)
        want = cls(model, eps=float(eps))(X, Y)
        torch.manual_seed(0)
        assert torch.equal(cls(model, eps=eps)(X, Y), want), cls.__name__
    grid = [np.float32(0), eps]
    want = accuracy_curve(model, [(X, Y)], [0.0, float(eps)], steps=2, seed=0)
    assert accuracy_curve(model, [(X, Y)], grid, steps=2, seed=0) == want
    assert robust_accuracy(model, [(X, Y)], eps, steps=2, seed=0) == want[1]
