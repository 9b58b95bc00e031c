"""fastrft's attacks against the peers people compare with: AutoAttack's own APGD-CE."""

import pytest
import torch

from fastrft.attacks import apgd
from fastrft.toy import accuracy


@pytest.mark.parametrize("eps", [2 / 255, 4 / 255])
def test_apgd_matches_autoattacks_apgd_ce(trained, eps):
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    model, x, y = trained
    theirs_attack = autopgd.APGDAttack(
        model, n_iter=10, norm="Linf", eps=eps, loss="ce", seed=0, device=torch.device("cpu")
    )
    theirs = accuracy(model, theirs_attack.perturb(x, y), y)
    ours = accuracy(model, apgd(model, x, y, eps, steps=10), y)
    # AutoAttack returns clean images for samples it never fooled: accuracies compare
    assert abs(ours - theirs) <= 0.02, f"fastrft APGD-CE {ours:.3f}, AutoAttack's {theirs:.3f}"
