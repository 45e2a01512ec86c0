"""Certified robust accuracy (P&L Eq. 3): exact values on a hand-built linear 1-Lipschitz model,
tightness of the sqrt(2) factor, and soundness against l2 PGD on a trained tiny AOL MLP."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deep.attacks import pgd
from deep.certify import (certified_radii, certified_robust_accuracy, cra_curve, margins,
                          margins_from_scores)
from deep.losses import OffsetCrossEntropy, as_loss_fn
from deep.models import build_model, set_input_mean
from deep.trainer import TrainConfig, fit


class FirstCoordinates(nn.Module):
    """scores = the first K input coordinates (a coordinate projection: 1-Lipschitz, and a
    linear map whose worst margin-decreasing direction is known in closed form). Not a layer of
    deep.layers, so the tests vouch for its constant with ``lipschitz=scale``."""

    def __init__(self, k: int, scale: float = 1.0):
        super().__init__()
        self.k, self.scale = k, scale
        self.dummy = nn.Parameter(torch.zeros(()))   # gives the model a device

    def forward(self, x):
        return self.scale * x.flatten(1)[:, : self.k] + 0 * self.dummy


X = torch.tensor([[2.0, 0.5, 0.0, 9.0],     # y=0: margin 1.5
                  [0.0, 1.0, 0.3, -9.0],    # y=1: margin 0.7
                  [0.2, 0.2, 0.9, 0.0],     # y=2: margin 0.7
                  [1.0, 1.0, 0.0, 0.0],     # y=0: tie, margin 0 (not certified, not accurate)
                  [0.0, 3.0, 0.0, 0.0]])    # y=2: wrong, margin -3
Y = torch.tensor([0, 1, 2, 0, 2])
MARGINS = torch.tensor([1.5, 0.7, 0.7, 0.0, -3.0])


def test_margins_and_radii_hand_built():
    model = FirstCoordinates(3)
    assert torch.allclose(margins(model, X, Y), MARGINS.double())
    radii = certified_radii(model, X, Y, lipschitz=1.0)
    assert torch.allclose(radii, MARGINS.double().clamp_min(0) / math.sqrt(2))


@pytest.mark.parametrize("eps,expected", [
    (0.0, 3 / 5),                    # margin > 0: the three correct, untied points
    (0.4, 3 / 5),                    # sqrt2 * 0.4 = 0.566 < 0.7
    (0.7 / math.sqrt(2), 1 / 5),     # strict inequality: margin 0.7 is not > 0.7
    (1.0, 1 / 5),                    # 1.414 < 1.5
    (1.5 / math.sqrt(2) + 1e-9, 0.0),
])
def test_cra_hand_built(eps, expected):
    assert certified_robust_accuracy(FirstCoordinates(3), X, Y, eps, lipschitz=1.0) == pytest.approx(expected)


def test_cra_lipschitz_parameter_rescales():
    model = FirstCoordinates(3, scale=2.0)      # 2-Lipschitz: margins double, radii unchanged
    assert torch.allclose(certified_radii(model, X, Y, lipschitz=2.0),
                          certified_radii(FirstCoordinates(3), X, Y, lipschitz=1.0))
    # radii 1.06, 0.49, 0.49 with the true constant; claiming L = 1 would wrongly double them
    assert certified_robust_accuracy(model, X, Y, 0.6, lipschitz=2.0) == pytest.approx(1 / 5)
    assert certified_robust_accuracy(model, X, Y, 0.6, lipschitz=1.0) == pytest.approx(3 / 5)


def test_sqrt2_factor_is_tight_for_linear_model():
    """For scores (x0, x1) the margin x0 - x1 falls fastest along (-1, 1)/sqrt2, at rate sqrt2:
    just beyond the certified radius the prediction flips, just inside it does not."""
    model = FirstCoordinates(2)
    x = torch.tensor([[2.0, 0.5]])
    y = torch.tensor([0])
    r = float(certified_radii(model, x, y, lipschitz=1.0))
    assert r == pytest.approx(1.5 / math.sqrt(2))
    d = torch.tensor([[-1.0, 1.0]]) / math.sqrt(2)
    assert int(model(x + r * (1 - 1e-6) * d).argmax()) == 0
    assert int(model(x + r * (1 + 1e-6) * d).argmax()) == 1


def test_cra_curve_against_brute_force_flip_search():
    """Independent check of Eq. (3) on the linear model: a point is certified at eps iff no
    perturbation of norm eps flips it; for scores = coordinates the worst direction towards
    class t is (e_t - e_y)/sqrt2, so brute force over targets t gives the exact robust set,
    which for this model equals the certified set (the sqrt2 bound is tight)."""
    model = FirstCoordinates(3)
    eps_values = [0.0, 0.3, 0.5, 0.6, 1.2]
    curve = cra_curve(model, X, Y, eps_values, lipschitz=1.0)
    expected = []
    for eps in eps_values:
        robust = 0
        for x, y in zip(X, Y):
            s = x[:3].double()
            ok = int(s.argmax()) == int(y) and int((s == s.max()).sum()) == 1
            for t in range(3):
                if t != int(y):
                    d = torch.zeros(3, dtype=torch.float64)
                    d[t], d[int(y)] = 1 / math.sqrt(2), -1 / math.sqrt(2)
                    z = s + eps * d
                    ok = ok and bool(z[int(y)] > z[t])      # ties count as flipped
            robust += ok
        expected.append(robust / len(X))
    assert curve["cra"] == pytest.approx(expected)
    assert expected == [3 / 5, 3 / 5, 1 / 5, 1 / 5, 0.0]      # hand count: margins 1.5, 0.7, 0.7
    assert curve["accuracy"] == pytest.approx(3 / 5)
    assert curve["median_radius"] == pytest.approx(0.7 / math.sqrt(2))


def test_margins_from_scores_ties_and_bad_input():
    s = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(margins_from_scores(s, torch.tensor([0]))) == 0.0
    with pytest.raises(ValueError):
        margins_from_scores(torch.zeros(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="eps"):
        certified_robust_accuracy(FirstCoordinates(3), X, Y, -0.1, lipschitz=1.0)
    with pytest.raises(ValueError, match="lipschitz"):
        certified_radii(FirstCoordinates(3), X, Y, lipschitz=0.0)
    with pytest.raises(ValueError, match="y must"):
        certified_robust_accuracy(FirstCoordinates(3), X, Y[:3], 0.1, lipschitz=1.0)
    with pytest.raises(ValueError, match="eps_values"):
        cra_curve(FirstCoordinates(3), X, Y, [], lipschitz=1.0)


@pytest.fixture(scope="module")
def trained_tiny_mlp():
    """A 3-layer AOL MLP trained for a few epochs on noisy 6x6 prototypes of 3 classes."""
    g = torch.Generator().manual_seed(0)
    n, k = 192, 3
    y = torch.arange(n) % k
    proto = torch.rand(k, 1, 6, 6, generator=g)
    x = (proto[y] + 0.3 * torch.randn(n, 1, 6, 6, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = build_model("aol_mlp", {"in_channels": 1, "input_size": 6, "num_classes": k, "depth": 3,
                                    "width": 32, "pad_to": None, "init": "orthogonal"})
    set_input_mean(model, x)
    fit(model, as_loss_fn(OffsetCrossEntropy(offset=1.0, temperature=0.25)), x, y,
        TrainConfig(epochs=15, batch_size=64, lr=0.05))
    model.eval()
    return model, x, y


@pytest.mark.parametrize("quantile", [0.5, 0.8])
def test_pgd_never_flips_a_certified_point(trained_tiny_mlp, quantile):
    """Soundness of Eq. (3): l2 PGD (100 steps) at eps changes no certified prediction, while it
    does flip some uncertified ones (so the attack is not toothless). Also the Lipschitz
    consequence margin(x_adv) >= margin(x) - sqrt2 ||x_adv - x|| holds for every point."""
    model, x, y = trained_tiny_mlp
    radii = certified_radii(model, x, y)
    eps = float(radii.quantile(quantile))
    certified = radii > eps
    assert 10 <= int(certified.sum()) < len(x)
    x_adv = pgd(model, x, y, eps, norm="2", steps=100, generator=torch.Generator().manual_seed(1))
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert float(dist.max()) <= eps * (1 + 1e-5)
    with torch.no_grad():
        pred, pred_adv = model(x).argmax(1), model(x_adv).argmax(1)
    assert int((pred_adv != pred)[certified].sum()) == 0
    assert int((pred_adv != y)[~certified].sum()) > 0
    m, m_adv = margins(model, x, y), margins(model, x_adv, y)
    assert bool((m_adv >= m - math.sqrt(2) * dist - 1e-5).all())


# ---- radius validation, score dtype, refusal of unsound models ------------------------------

def test_eps_in_pixel_levels_is_refused_with_a_hint():
    """36 instead of 36/255 silently gave CRA 0; a radius beyond the input box's l2 diameter
    (28 for 784 features in [0, 1]) is refused, naming eps and suggesting /255."""
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.long)
    model = FirstCoordinates(3)
    with pytest.raises(ValueError, match=r"eps=36 .*255"):
        certified_robust_accuracy(model, x, y, 36, lipschitz=1.0)
    with pytest.raises(ValueError, match="eps_values"):
        cra_curve(model, x, y, [36 / 255, 72], lipschitz=1.0)
    for bad in (float("inf"), float("nan"), -1e-3):
        with pytest.raises(ValueError, match="eps"):
            certified_robust_accuracy(model, x, y, bad, lipschitz=1.0)
    with pytest.raises(TypeError, match="eps"):
        certified_robust_accuracy(model, x, y, [0.1, 0.2], lipschitz=1.0)
    assert certified_robust_accuracy(model, x, y, 28.0, lipschitz=1.0) >= 0.0   # the diameter itself
    assert cra_curve(model, x, y, 2.0, lipschitz=1.0)["eps"] == [2.0]            # one radius


def test_float64_margins_are_not_rounded_to_float32():
    """Scores 1 + 1e-12 and 1 in float64: margin 1e-12 > 0, a correct, certified point at radius
    5e-13; rounding the scores to float32 made it a tie (margin 0, not even accurate)."""
    model = FirstCoordinates(2).double()
    x = torch.tensor([[1.0 + 1e-12, 1.0], [0.5, 0.25]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    m = margins(model, x, y)
    assert m.dtype == torch.float64 and float(m[0]) == pytest.approx(1e-12, rel=1e-3)
    assert certified_robust_accuracy(model, x, y, 0.0, lipschitz=1.0) == 1.0
    assert certified_robust_accuracy(model, x, y, 5e-13, lipschitz=1.0) == 1.0
    assert certified_robust_accuracy(model, x, y, 8e-13, lipschitz=1.0) == 0.5


def test_certificate_refuses_models_that_are_not_one_lipschitz_by_construction():
    """Default lipschitz=None: a model declaring lipschitz = False, or holding a layer outside the
    1-Lipschitz set (BatchNorm, plain Linear, a custom module), is refused with its name."""
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    simple = build_model("simple_convnet", {"base_width": 4, "input_size": 8, "in_channels": 1})
    with pytest.raises(ValueError, match="lipschitz = False"):
        certified_robust_accuracy(simple, x, y, 0.1)
    torch.manual_seed(0)
    mlp = build_model("aol_mlp", {"in_channels": 1, "input_size": 8, "num_classes": 10, "depth": 2,
                                  "width": 16, "pad_to": None})
    assert 0.0 <= certified_robust_accuracy(mlp, x, y, 0.1) <= 1.0           # accepted
    mlp.net.insert(3, nn.BatchNorm1d(64))
    with pytest.raises(ValueError, match=r"net\.3 \(BatchNorm1d\)"):
        certified_radii(mlp, x, y)
    with pytest.raises(ValueError, match="FirstCoordinates"):
        cra_curve(FirstCoordinates(3), X, Y, [0.1])
    # the caller may vouch for a constant explicitly
    assert len(certified_radii(FirstCoordinates(3), X, Y, lipschitz=1.0)) == len(X)


def test_labels_must_be_integer_indices_one_per_row():
    model = FirstCoordinates(3)
    with pytest.raises(TypeError, match="y must hold integer class indices"):
        certified_robust_accuracy(model, X, Y.double(), 0.1, lipschitz=1.0)
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        cra_curve(model, X, Y[:4], [0.1], lipschitz=1.0)
    with pytest.raises(TypeError, match="y must be a torch tensor"):
        certified_radii(model, X, Y.tolist(), lipschitz=1.0)


def test_data_parallel_wrapper_of_a_lipschitz_model_is_accepted():
    torch.manual_seed(0)
    mlp = build_model("aol_mlp", {"in_channels": 1, "input_size": 8, "num_classes": 10, "depth": 2,
                                  "width": 16, "pad_to": None})
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    wrapped = nn.DataParallel(mlp)            # on a CPU-only machine it just calls the module
    torch.testing.assert_close(certified_radii(wrapped, x, y), certified_radii(mlp, x, y))
